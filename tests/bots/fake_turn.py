"""A Turn that records what the job runner did with it (like errbot's test
backend): the runner's lifecycle is tested on it without any platform."""

from __future__ import annotations

import asyncio

from bots.turns import DeliveryFailed, Reach, Turn
from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress, Requester


class FakeWords:
    def error(self, error: ImagineError) -> str:
        return f"error: {error.user_message}"

    def shutting_down(self) -> str:
        return "shutting down"

    def unexpected(self, reference: str) -> str:
        return f"sorry ({reference})"

    def stopped(self, reason: str) -> str:
        return f"stopped: {reason}"

    def undelivered(self, job_id: str, failure: DeliveryFailed, *, given_back: bool) -> str:
        return f"not posted: {failure.detail}; given back: {given_back}"

    def interrupted(self, job: InterruptedJob) -> str:
        return f"interrupted: {job.job_id}"


class FakeTurn(Turn):
    platform = "fake"
    words = FakeWords()

    def __init__(self, *, fail_delivery: str | None = None, hang_delivery: bool = False) -> None:
        super().__init__()
        self.requester = Requester(platform="fake", workspace="w", user="u", channel="c")
        self.fail_delivery = fail_delivery
        self.hang_delivery = hang_delivery
        self.said: list[tuple[str, bool]] = []  # (text, private)
        self.progressed: list[Progress] = []
        self.posted: list[ImageResult] = []
        self.events: list[str] = []

    def reach(self) -> Reach:
        return {"platform": "fake", "user": "u"}

    async def progress(self, progress: Progress) -> None:
        self.progressed.append(progress)

    async def _say(self, text: str, *, private: bool) -> bool:
        self.events.append("tell")
        self.said.append((text, private))
        return True

    async def deliver(self, result: ImageResult) -> None:
        if self.hang_delivery:
            await asyncio.Event().wait()
        if self.fail_delivery is not None:
            raise DeliveryFailed(self.fail_delivery)
        self.events.append("deliver")
        self.posted.append(result)

    async def withdraw(self) -> None:
        self.events.append("withdraw")
