"""One user request on one platform, as the job runner sees it.

A `Turn` is what an adapter hands `JobRunner.run`: who asked, how to reach
them again after a crash, how to show progress, post the images, tell them
something (publicly or privately) and take the progress message away. The
runner owns the lifecycle; a Turn only knows its platform's calls and words.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Protocol

from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress, Requester

Reach = Mapping[str, Any]
"""What the ledger stores with a job (as JSON) so that a later process can
turn it back into a Turn (`turn_from`) and tell the user the job ended."""


class DeliveryFailed(Exception):
    """The images could not be posted: the runner gives them back to the user."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Words(Protocol):
    """A platform's wording for what the runner tells a user."""

    def error(self, error: ImagineError) -> str: ...
    def shutting_down(self) -> str: ...
    def unexpected(self, reference: str) -> str: ...
    def stopped(self, reason: str) -> str: ...
    def undelivered(self, job_id: str, failure: DeliveryFailed, *, given_back: bool) -> str: ...
    def interrupted(self, job: InterruptedJob) -> str: ...


class Turn(abc.ABC):
    """One request. `tell` answers at most once, whatever path the request
    takes (images posted, refused, cancelled, interrupted, a bug)."""

    platform: str
    requester: Requester
    words: Words

    def __init__(self) -> None:
        self.answered = False

    def delivered(self) -> None:
        """The answer was given another way (the images, a modal)."""
        self.answered = True

    async def tell(self, text: str, *, private: bool = True) -> bool:
        """Tell the user `text` (only them if `private`), exactly once: True if it reached them."""
        if self.answered:
            return False
        self.answered = True
        return await self._say(text, private=private)

    @abc.abstractmethod
    async def _say(self, text: str, *, private: bool) -> bool: ...

    @abc.abstractmethod
    def reach(self) -> Reach:
        """Stored with the job: enough to tell the user after a crash."""

    @abc.abstractmethod
    async def progress(self, progress: Progress) -> None:
        """Show where the job is (never raises, never waits on the platform long)."""

    @abc.abstractmethod
    async def deliver(self, result: ImageResult) -> None:
        """Post the images publicly; raises DeliveryFailed if they were not posted."""

    @abc.abstractmethod
    async def withdraw(self) -> None:
        """The progress message (placeholder, "thinking…") goes; no progress after this."""
