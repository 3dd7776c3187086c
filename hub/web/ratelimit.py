"""A sliding-window rate limit per client, in process (each worker counts on its own).

The window is exact: a client may make `limit` hits in any `window_seconds`, and the hit after
that waits until its oldest counted hit leaves the window. Memory is bounded twice over: a key
keeps at most `limit` timestamps, keys whose hits have all left the window are dropped as new
hits arrive, and past `max_keys` the least recently seen key is forgotten (under a flood of
distinct addresses a forgotten client gets a fresh window: the limit degrades, memory does not).

Not thread-safe, and need not be: every hit runs on the worker's event loop without awaiting.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # Seconds until the next hit would be allowed; 0 when this one was.
    retry_after: float

    @property
    def retry_after_header(self) -> str:
        """Retry-After in whole seconds, rounded up and at least 1 (0 would invite a retry
        that is still refused)."""
        return str(max(1, math.ceil(self.retry_after)))


class SlidingWindowLimiter:
    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a rate limit needs at least one hit per window")
        if window_seconds <= 0:
            raise ValueError("a rate limit's window must be longer than zero")
        if max_keys < 1:
            raise ValueError("a rate limit must remember at least one client")
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self._clock = clock
        # Least recently hit first, so expired keys and eviction candidates sit at the front.
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def hit(self, key: str) -> Decision:
        """Count one hit of `key` if the window has room; a refused hit is not counted, so a
        client that keeps retrying is let in as soon as its oldest hit expires."""
        now = self._clock()
        self._drop_expired(now)
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return Decision(False, hits[0] + self.window - now)
        hits.append(now)
        # Only a counted hit moves its key to the back: the order stays that of each key's
        # newest counted hit, which is what `_drop_expired` relies on.
        self._hits.move_to_end(key)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)
        return Decision(True, 0.0)

    def _drop_expired(self, now: float) -> None:
        # Keys are ordered by their last hit, so the expired ones are a prefix: this stops at
        # the first key still in its window and costs O(1) per key ever dropped.
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if hits and hits[-1] > now - self.window:
                return
            del self._hits[key]
