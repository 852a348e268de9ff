"""Rules of the code base, checked on the source with `ast` (like
tests/core/test_module_rules.py): the two adapters never import each other,
only bots/settings.py reads the environment, and SQL lives only in the store
and the ledger."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA)\b[\s\S]*\b(FROM|INTO|SET|TABLE|INDEX|WHERE|VALUES)\b")
SQL_HOMES = ("core/store", "core/ledger")


def modules(*folders: str) -> list[Path]:
    found = sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))
    assert len(found) >= 5, f"found only {len(found)} modules under {folders}"
    return found


def imported_modules(source: str) -> set[str]:
    """Dotted names a module imports, anywhere in it (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def reads_environment(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in ("environ", "getenv") for a in node.names):
            return True
    return False


def sql_strings(source: str) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)
    ]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize(
    ("check", "source", "expected"),
    [
        (imported_modules, "from bots.discord.render import x\ndef f():\n    import slack_sdk.web\n", {"bots.discord.render", "slack_sdk.web"}),
        (reads_environment, "import os\nos.environ.get('X')", True),
        (reads_environment, "from os import getenv", True),
        (reads_environment, "settings.environment", False),
        (sql_strings, "q = 'SELECT notify FROM jobs WHERE id = ?'", ["SELECT notify FROM jobs WHERE id = ?"]),
        (sql_strings, "t = 'Select a size from the list'", []),
    ],
)
def test_the_checkers_see_what_they_look_for(check, source, expected) -> None:  # type: ignore[no-untyped-def]
    assert check(source) == expected


@pytest.mark.parametrize(
    ("adapter", "other"),
    [("bots/slack", ("discord", "bots.discord")), ("bots/discord", ("slack_bolt", "slack_sdk", "bots.slack"))],
)
def test_the_adapters_never_import_each_other(adapter: str, other: tuple[str, ...]) -> None:
    offenders = {
        rel(path): sorted(m for m in imported_modules(path.read_text(encoding="utf-8")) if m.split(".")[0] in other or m.startswith(other))
        for path in modules(adapter)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_settings_reads_the_environment() -> None:
    readers = {rel(p) for p in modules("core", "bots") if reads_environment(p.read_text(encoding="utf-8"))}
    assert readers <= {"bots/settings.py"}


def test_sql_lives_only_in_the_store_and_the_ledger() -> None:
    outside = {
        rel(p): sql_strings(p.read_text(encoding="utf-8"))
        for p in modules("core", "bots")
        if not rel(p).startswith(SQL_HOMES)
    }
    assert {k: v for k, v in outside.items() if v} == {}
