"""The fake OpenAI's rate-limit mode: N images per sliding window of W
seconds (W = 60 is the real API's minute; tests and benchmarks shorten it to
scale time), answered as the real API answers: 429 `rate_limit_exceeded`
with "Rate limit reached for <model> in organization org-fake on images per
min (IPM): Limit N, Used M, Requested k. Please try again in Xs. ...", and,
when asked for, the rate-limit headers (x-ratelimit-limit-images,
x-ratelimit-remaining-images, x-ratelimit-reset-images, retry-after-ms).

A call is counted when it is admitted (a 429'd call counts nothing). Every
admission and every refusal is recorded, so tests assert on what the fake
saw: at no moment more than N images in any window, how many 429s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RateWindow:
    images: int  # N: images per window
    window: float = 60.0  # W, seconds
    headers: bool = False  # send the x-ratelimit-*-images headers too
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, images), every admitted call
    refused: list[tuple[float, int]] = field(default_factory=list)  # the same, for every 429

    def used(self, now: float) -> int:
        return sum(n for at, n in self.admitted if at > now - self.window)

    def admit(self, n: int, now: float | None = None) -> tuple[bool, float]:
        """(admitted, seconds until a call of n would be). Counts it if admitted."""
        now = time.monotonic() if now is None else now
        used = self.used(now)
        if used + n <= self.images:
            self.admitted.append((now, n))
            return True, 0.0
        self.refused.append((now, n))
        need, freed, wait = used + n - self.images, 0, self.window
        for at, images in (a for a in self.admitted if a[0] > now - self.window):
            freed += images
            if freed >= need:
                wait = at + self.window - now
                break
        return False, max(0.001, wait)

    def message(self, model: str, n: int, wait: float, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        return (
            f"Rate limit reached for {model} in organization org-fake on images per min (IPM): Limit {self.images}, "
            f"Used {self.used(now)}, Requested {n}. Please try again in {wait:.3f}s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )

    def response_headers(self, wait: float, now: float | None = None) -> dict[str, str]:
        if not self.headers:
            return {}
        now = time.monotonic() if now is None else now
        remaining = max(0, self.images - self.used(now))
        oldest = min((at for at, _ in self.admitted if at > now - self.window), default=now)
        reset = wait if wait > 0 else max(0.0, oldest + self.window - now)
        out = {
            "x-ratelimit-limit-images": str(self.images),
            "x-ratelimit-remaining-images": str(remaining),
            "x-ratelimit-reset-images": f"{reset:.3f}s",
        }
        if wait > 0:
            out["retry-after-ms"] = str(int(wait * 1000) + 1)
        return out

    def most_in_any_window(self) -> int:
        """The most images admitted within any one window: never above `images`."""
        times = self.admitted
        best = 0
        for i, (start, _) in enumerate(times):
            best = max(best, sum(n for at, n in times[i:] if at < start + self.window))
        return best
