"""The rows behind the buttons under a result and /history (schema step 4):
an edit's inputs, where a result was posted, deletion, and a user's latest
jobs — on SQLite and PostgreSQL, and read back by a second service on the
same database as after a restart."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.errors import InvalidInput, NotPermitted
from core.models import ImageOptions
from core.results import may_delete
from tests.conftest import BACKENDS, MakeService
from tests.core.scenario import admin_of, member
from core.models import Upload


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_inputs_and_result_survive_a_restart_and_delete_marks_once(make_service: MakeService, db_url) -> None:
    path = db_url("ledger")
    service = await make_service(db_path=path)
    alice = member("UALICE")
    made = await service.generate(alice, "a red fox", ImageOptions(quality="low"))
    edited = await service.edit(alice, "make it blue", [Upload("a.png", png_bytes())], ImageOptions())
    await service.results.remember_inputs(edited.job_id, [{"file": "F1"}, {"file": "F2"}], {"file": "FM"})
    await service.results.remember_result(made.job_id, {"channel": "C1", "ts": "1.2"})

    again = await make_service(db_path=path)  # a new process on the same database
    inputs = await again.results.inputs(edited.job_id)
    assert inputs.images == ({"file": "F1"}, {"file": "F2"}) and inputs.mask == {"file": "FM"}
    assert (await again.results.inputs(made.job_id)).images == ()
    assert await again.results.result(made.job_id) == {"channel": "C1", "ts": "1.2"}
    record = await again.results.job(edited.job_id)
    assert record is not None and record.kind == "edit" and record.usage.output_image_tokens > 0
    assert record.model_used == "gpt-image-2" and record.cost_usd > 0 and record.input_images == 1

    assert await again.results.forget_result(made.job_id) is True
    assert await service.results.forget_result(made.job_id) is False  # the second Delete finds it gone
    assert await again.results.result(made.job_id) is None


async def test_history_lists_the_latest_ten_newest_first_with_their_links(make_service: MakeService) -> None:
    # 13 calls in a row: a configured pace, not one learned from 5 a minute (this test is not about pacing).
    service = await make_service(limits={"daily_images_per_user": 50, "max_jobs_in_flight_per_user": 2},
                                 openai={"images_per_minute": 100_000})  # fmt: skip
    alice, bob = member("UALICE"), member("UBOB")
    jobs = [await service.generate(alice, f"prompt {i}", ImageOptions(quality="low")) for i in range(12)]
    await service.generate(bob, "not alice's", ImageOptions(quality="low"))
    await service.results.remember_result(jobs[-1].job_id, {"channel": "C1", "ts": "9.9"})
    await service.results.remember_result(jobs[-2].job_id, {"channel": "C1", "ts": "9.8"})
    await service.results.forget_result(jobs[-2].job_id)

    history = await service.results.history(alice)

    assert [e.job.prompt for e in history] == [f"prompt {i}" for i in range(11, 1, -1)]
    assert history[0].result_ref == {"channel": "C1", "ts": "9.9"}
    assert history[1].result_ref is None  # deleted: no link any more
    assert history[0].job.status == "succeeded" and history[0].job.cost_usd > 0


async def test_only_an_admin_of_that_workspace_sees_someone_elses_history(make_service: MakeService) -> None:
    service = await make_service()
    alice = member("UALICE")
    await service.generate(alice, "mine", ImageOptions(quality="low"))
    with pytest.raises(NotPermitted):
        await service.results.history_for(member("UBOB"), alice.key)
    with pytest.raises(InvalidInput):
        await service.results.history_for(admin_of("T2"), alice.key)
    assert [e.job.prompt for e in await service.results.history_for(admin_of(), alice.key)] == ["mine"]


async def test_delete_is_for_the_requester_or_an_admin_of_that_workspace(make_service: MakeService) -> None:
    service = await make_service()
    made = await service.generate(member("UALICE"), "mine", ImageOptions(quality="low"))
    record = await service.results.job(made.job_id)
    assert record is not None
    assert may_delete(member("UALICE"), record)
    assert may_delete(admin_of(), record)
    assert not may_delete(member("UBOB"), record)
    assert not may_delete(admin_of("T2"), record)
