"""The store's two backends behind one interface: which one IMAGINEBOT_DB (or
DATABASE_URL) picks, and the job status machine every ledger update obeys."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.settings import Settings
from core.ledger_status import RESERVED, STATUSES, TRANSITIONS, may_become, sources
from core.models import ImageOptions
from core.store import redact, store_for
from core.store_postgres import PostgresStore
from core.store_sqlite import SqliteStore
from tests.conftest import MakeService
from tests.core.scenario import member


def settings_from(env: dict[str, str], tmp_path: Path) -> Settings:
    return Settings.from_env(env, dotenv_path=str(tmp_path / "no.env"))


def test_database_url_is_used_when_imaginebot_db_is_not_set(tmp_path: Path) -> None:
    url = "postgresql://bot:fake-password@db.example:5432/imaginebot"
    assert settings_from({"DATABASE_URL": url}, tmp_path).db_path == url
    assert settings_from({"DATABASE_URL": url, "IMAGINEBOT_DB": "mine.db"}, tmp_path).db_path == "mine.db"
    assert settings_from({}, tmp_path).db_path == "imaginebot.db"  # the embedded default needs no server


def test_the_url_picks_the_backend() -> None:
    assert isinstance(store_for("imaginebot.db"), SqliteStore)
    for url in ("postgresql://u@h/db", "postgres://u:p@h:5432/db"):  # Heroku's DATABASE_URL says postgres://
        assert isinstance(store_for(url), PostgresStore)


def test_a_url_password_never_reaches_a_message() -> None:
    assert redact("postgresql://bot:s3cret@db:5432/x") == "postgresql://bot:***@db:5432/x"
    assert redact("postgresql://bot@db/x") == "postgresql://bot@db/x"
    assert redact("imaginebot.db") == "imaginebot.db"


def test_the_status_table_names_every_status_and_who_may_follow_it() -> None:
    assert set(TRANSITIONS) <= set(STATUSES)
    assert all(target in STATUSES for targets in TRANSITIONS.values() for target in targets)
    assert sources("undelivered") == ("succeeded",)
    assert sources("interrupted") == (RESERVED,)
    assert may_become("failed") == "status IN ('reserved', 'batched')"  # a relax job waiting for its batch can fail too
    assert "batched" not in sources("interrupted")  # a restart never interrupts a relax job: the ledger owns it
    with pytest.raises(ValueError):
        sources("reserved")  # nothing becomes reserved again: a job is reserved once, at its start


async def test_a_refund_can_only_end_a_job_as_failed_or_interrupted(make_service: MakeService) -> None:
    service = await make_service()
    ledger = service.ledger
    reservation = await service.store.run(
        lambda: ledger.reserve_sync(member(), kind="generate", prompt="p", options=ImageOptions(), model="gpt-image-2",
                                    units=1.0, usd=0.05)  # fmt: skip
    )
    with pytest.raises(ValueError):
        await service.store.run(lambda: ledger.refund_sync(reservation.job_id, status="succeeded"))
    assert await service.store.run(lambda: ledger.refund_sync(reservation.job_id, status="interrupted")) is True
