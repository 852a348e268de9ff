"""The core is platform-neutral: it never imports Slack or Discord libraries,
and only the provider talks to the OpenAI SDK (so every SDK error is
translated in one place). Checked on the source with `ast`, the way
python-telegram-bot checks its module rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"
PLATFORM_PACKAGES = {"slack_bolt", "slack_sdk", "discord"}
OPENAI_ALLOWED = {"core/provider.py"}


def imported_packages(source: str) -> set[str]:
    """Top-level package names a module imports, anywhere in it (functions
    and `if TYPE_CHECKING:` blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def core_modules() -> list[Path]:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) >= 10, f"found only {len(modules)} modules under {CORE}"
    return modules


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import discord", {"discord"}),
        ("from slack_sdk.web.async_client import AsyncWebClient", {"slack_sdk"}),
        ("def f():\n    import slack_bolt.app\n", {"slack_bolt"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from discord import Interaction\n", {"typing", "discord"}),
        ("import importlib\nimportlib.import_module('openai')", {"importlib", "openai"}),
        ("from . import models\nfrom .errors import ImagineError", set()),
    ],
)
def test_checker_sees_every_form_of_import(source: str, expected: set[str]) -> None:
    assert imported_packages(source) == expected


def test_core_never_imports_a_platform_library() -> None:
    offenders = {
        str(path.relative_to(CORE.parent)): sorted(imported_packages(path.read_text(encoding="utf-8")) & PLATFORM_PACKAGES)
        for path in core_modules()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_provider_imports_openai() -> None:
    importers = {
        str(path.relative_to(CORE.parent))
        for path in core_modules()
        if "openai" in imported_packages(path.read_text(encoding="utf-8"))
    }
    assert importers == OPENAI_ALLOWED


def colon_splits(source: str) -> list[int]:
    """Lines that take a string apart at ":" (`.partition(":")`, `.split(":")`, ...)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("partition", "rpartition", "split", "rsplit")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == ":"
    ]


def test_requester_keys_are_taken_apart_only_by_requester_key() -> None:
    """platform:workspace:user is parsed in one place (core.models.RequesterKey),
    so its format cannot drift between the core, the adapters and the CLI."""
    root = CORE.parent
    offenders = {
        str(path.relative_to(root)): lines
        for folder in ("core", "bots")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "core" / "models.py" and (lines := colon_splits(path.read_text()))
    }
    assert offenders == {}
    assert colon_splits('a.partition(":")\nb.split(":", 1)\nc.split(",")') == [1, 2]
