"""An event loop of its own, on its own thread, for the OpenAI client.

Why: with many image calls in flight, the SDK's HTTP connection pool does
work per open connection each time a response closes, and parsing a large
response (8 base64 images of 2048x2048 are tens of MB of JSON) takes CPU
time. On the adapters' loop that stalls Slack acks and Discord defers, which
must answer within 3 s. On this thread it only takes its share of the GIL.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the thread's loop. Cancelling the caller cancels it there too."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()
