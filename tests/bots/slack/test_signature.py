"""The signature is checked on the raw body before anything else reads it:
whatever is wrong with a request (no headers, a timestamp that is not a
number or is stale, a bad signature, a body too big) it gets 401, runs
nothing, and leaves one short line in the log, never its body."""

from __future__ import annotations

import logging
import time
from typing import Callable

import pytest

from tests.bots.slack.conftest import SlackBot, sign
from tests.bots.slack.test_replays import imagine_body
from tests.fakes.openai_server import FakeOpenAI

FORM = "application/x-www-form-urlencoded"
MARKER = "PROMPT-THAT-MUST-NOT-BE-LOGGED"
BIG = 1024 * 1024 + 1


def body() -> str:
    return imagine_body(f"a fox {MARKER}", "http://127.0.0.1:9/response/RESPONSE-URL-MARKER", "9.forged")


def now() -> str:
    return str(int(time.time()))


# Each case: (the body, the headers it is sent with).
CASES: dict[str, Callable[[], tuple[str, dict[str, str]]]] = {
    "unsigned broken JSON": lambda: ("{broken " + MARKER, {"Content-Type": "application/json"}),
    "signed with another secret": lambda: (body(), sign(body(), secret="not-the-secret")),
    "no signature header": lambda: (body(), {"X-Slack-Request-Timestamp": now()}),
    "no timestamp header": lambda: (body(), {"X-Slack-Signature": sign(body())["X-Slack-Signature"]}),
    "timestamp not a number": lambda: (body(), {**sign(body()), "X-Slack-Request-Timestamp": "soon"}),
    "timestamp in unicode digits": lambda: (body(), {**sign(body()), "X-Slack-Request-Timestamp": "١٧٠٠٠٠٠٠٠٠"}),
    "stale but genuine": lambda: (body(), sign(body(), timestamp=int(time.time()) - 600)),
    "from the future": lambda: (body(), sign(body(), timestamp=int(time.time()) + 600)),
    "body changed after signing": lambda: (body(), sign(body().replace("fox", "cat"))),
    "signed but too big": lambda: ((big := body() + "&pad=" + "x" * BIG), sign(big)),
    "forged and too big": lambda: (MARKER + "x" * BIG, sign("something else")),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_bad_request_gets_401_runs_nothing_and_logs_no_body(
    bot: SlackBot, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    data, headers = CASES[case]()
    async with bot.http.post(bot.url, data=data.encode(), headers={"Content-Type": FORM, **headers}) as resp:
        assert resp.status == 401
    await bot.settle()
    assert bot.slack.calls == []
    assert fake_openai.requests == []
    assert MARKER not in caplog.text and "RESPONSE-URL-MARKER" not in caplog.text
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(line) < 200


async def test_a_flood_of_forged_requests_leaves_a_few_short_lines(bot: SlackBot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    forged = MARKER + "x" * (512 * 1024)
    for _ in range(20):
        async with bot.http.post(bot.url, data=forged.encode(), headers={"Content-Type": FORM, **sign("other")}) as resp:
            assert resp.status == 401
    assert MARKER not in caplog.text
    # 20 x 512 KB bodies, a few hundred bytes of log (aiohttp's access log is off in production: bots/logs.py).
    assert sum(len(r.getMessage()) for r in caplog.records if r.name != "aiohttp.access") < 1000
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) <= 2


async def test_a_genuine_request_still_runs(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    status, _ = await bot.post(body(), FORM)
    assert status == 200
    await bot.settle()
    assert len(fake_openai.calls("/images/generations")) == 1
