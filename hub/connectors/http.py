"""The HTTP side of the pull kinds: GET JSON from a departmental system that is slow, flaky or down.

`Fetcher` wraps one `httpx.AsyncClient` for one connector run. It retries what a retry can fix
(timeouts, refused and dropped connections, 5xx, 429, a 200 whose body does not parse because the
source was mid-write), with exponential backoff and full jitter, and honours `Retry-After`. It
does not retry what a retry cannot fix (other 4xx, redirects, bad URLs): those raise SourceError at
once. A circuit breaker stops a run from hammering a system that is down.

Fetcher options (keys of the definition's [source] table, shared by every HTTP kind):

- `retries` (5): retries per request after the first attempt.
- `backoff_base` (0.2 s), `backoff_cap` (10 s): retry n waits uniform(0, min(cap, base * 2**n)).
- `timeout_seconds` (10): connect/read/write/pool timeout of one attempt.
- `max_retry_after` (60 s): a longer `Retry-After` is cut to this.
- `breaker_threshold` (5): failed attempts (and 70% of the recent ones) that open the breaker.
- `breaker_cooldown` (30 s): how long the breaker stays open before one trial request.
- `seed` (none): seeds the backoff jitter (tests).

Secrets: auth headers go on the client only. Errors name the status and the URL without its query
string (some systems take an API key as a query parameter) and never an exception's text.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx
import orjson

from hub.connectors.records import Faults, SourceContext, SourceError

log = logging.getLogger(__name__)

BreakerState = str  # "closed" | "open" | "half_open"


@dataclass(frozen=True, slots=True)
class FetchOptions:
    retries: int = 5
    backoff_base: float = 0.2
    backoff_cap: float = 10.0
    timeout_seconds: float = 10.0
    max_retry_after: float = 60.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FetchOptions:
        """The fetcher options in a [source] table (others ignored); check them first."""
        chosen = {f.name: options[f.name] for f in fields(cls) if f.name in options}
        return cls(**chosen)


_INTEGER_OPTIONS = ("retries", "breaker_threshold")


def check_source_options(
    options: Mapping[str, Any], *, own: frozenset[str], text: Iterable[str]
) -> list[tuple[str, str]]:
    """The checks every HTTP kind shares: the fetcher's options, no unknown option (a typo
    such as `retires` must not silently fall back to a default), and text where text is due."""
    problems = check_fetch_options(options)
    known = own | {f.name for f in fields(FetchOptions)}
    problems.extend((key, "unknown option") for key in options if key not in known)
    problems.extend(
        (key, "must be a string")
        for key in text
        if key in options and not isinstance(options[key], str)
    )
    return problems


def check_fetch_options(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, reason) for every fetcher option that is not usable."""
    problems: list[tuple[str, str]] = []
    for f in fields(FetchOptions):
        if f.name not in options:
            continue
        value = options[f.name]
        integer = f.name in _INTEGER_OPTIONS
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            problems.append((f.name, "must be an integer" if integer else "must be a number"))
        elif value < 0 or (f.name in ("breaker_threshold", "timeout_seconds") and value <= 0):
            problems.append((f.name, "must be positive"))
    return problems


def safe_url(url: httpx.URL | str) -> str:
    """A URL fit for an error message or a log: no user info, query or fragment."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP-date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class CircuitBreaker:
    """Opens when the recent attempts are mostly failures, so a dead source is given up on after
    a few attempts and a flaky one never is.

    A plain "N consecutive failures" breaker opens now and then on a healthy source that fails
    10% of the time (0.1**5 per attempt adds up over a long run). This one needs at least
    `threshold` failures AND 70% of the last 20 (or 4 * threshold) outcomes to be failures. A
    source dead from the start opens it after `threshold` attempts, one that dies mid-run
    after 14; a 10% flaky one has about 1e-10 chance per attempt once the window is full (and
    0.1**threshold once, at the start, which no breaker can tell from a dead source)."""

    def __init__(
        self, *, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._outcomes: deque[bool] = deque(maxlen=max(4 * threshold, 20))
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May an attempt go out now? In half_open, exactly one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def succeeded(self) -> None:
        self._outcomes.append(True)
        if self._opened_at is not None:
            # The trial worked: start afresh rather than reopen on old failures.
            self._opened_at = None
            self._trial_running = False
            self._outcomes.clear()

    def failed(self) -> None:
        self._outcomes.append(False)
        if self._opened_at is not None:
            # The trial failed (or a request that started before opening): stay open longer.
            self._opened_at = self._clock()
            self._trial_running = False
            return
        failures = self._outcomes.count(False)
        if failures >= self.threshold and failures >= 0.7 * len(self._outcomes):
            self._opened_at = self._clock()


@dataclass(frozen=True, slots=True)
class _Retry:
    kind: str  # the fault kind noted in Faults
    detail: str  # for the final error: "503", "ReadTimeout"
    wait: float | None = None  # what the server asked for (Retry-After), if anything


class Fetcher:
    """GET JSON with retries, backoff and a circuit breaker. One per connector run.

    Use as `async with fetcher:` (it opens and closes the client); the breaker outlives the
    block, so `breaker_state` can be reported after the run."""

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        faults: Faults,
        options: FetchOptions | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = options or FetchOptions()
        self.faults = faults
        self._headers = dict(headers)
        self._rng = rng or random.Random()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.breaker = CircuitBreaker(
            threshold=self.options.breaker_threshold,
            cooldown=self.options.breaker_cooldown,
            clock=clock,
        )

    @classmethod
    def from_context(cls, ctx: SourceContext, *, rng: random.Random | None = None) -> Fetcher:
        """A fetcher with the context's auth headers, fault counter and fetcher options. A
        `seed` option seeds its jitter (tests)."""
        if rng is None and "seed" in ctx.options:
            rng = random.Random(ctx.options["seed"])
        return cls(
            headers=ctx.headers,
            faults=ctx.faults,
            options=FetchOptions.from_options(ctx.options),
            rng=rng,
        )

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    async def __aenter__(self) -> Fetcher:
        self._client = httpx.AsyncClient(
            headers=self._headers,
            timeout=httpx.Timeout(self.options.timeout_seconds),
            # A redirect to another host would carry custom auth headers along: refuse instead.
            follow_redirects=False,
            transport=self._transport,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, httpx.Headers, int]:
        """(body, response headers, status). A 304 gives body None. Raises SourceError when the
        request cannot succeed: retries exhausted, breaker open, a 4xx, a redirect."""
        if self._client is None:
            raise RuntimeError("use the Fetcher inside `async with`")
        where = safe_url(url)
        last: _Retry | None = None
        for attempt in range(self.options.retries + 1):
            if not self.breaker.allow():
                raise self._circuit_open(where)
            outcome = await self._attempt(url, where, params=params, headers=headers)
            if not isinstance(outcome, _Retry):
                self.breaker.succeeded()
                return outcome
            last = outcome
            # 429 is the source pacing us, not failing: it does not count toward the breaker.
            if outcome.kind != "http_429":
                self.breaker.failed()
            if attempt == self.options.retries:
                break
            if self.breaker.state == "open":
                # No point sleeping for a retry the breaker will refuse.
                raise self._circuit_open(where)
            self.faults.note(outcome.kind)
            delay = self._delay(attempt, outcome.wait)
            log.info("GET %s: %s, retrying in %.2f s", where, outcome.detail, delay)
            await asyncio.sleep(delay)
        assert last is not None
        raise SourceError(
            f"GET {where}: {last.detail} after {self.options.retries + 1} attempts",
            code="RETRIES_EXHAUSTED",
        )

    def _circuit_open(self, where: str) -> SourceError:
        return SourceError(
            f"GET {where}: the source failed repeatedly; not asking again for "
            f"{self.options.breaker_cooldown:g} s",
            code="CIRCUIT_OPEN",
        )

    def _delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.options.max_retry_after)
        ceiling = min(self.options.backoff_cap, self.options.backoff_base * 2**attempt)
        return self._rng.uniform(0, ceiling)

    async def _attempt(
        self,
        url: str,
        where: str,
        *,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[Any, httpx.Headers, int] | _Retry:
        assert self._client is not None
        try:
            # Merged into the URL's own query, which httpx would otherwise replace: a [source]
            # URL may carry fixed parameters (a filter such as ?department=health).
            target = httpx.URL(url).copy_merge_params(dict(params)) if params else url
            response = await self._client.get(target, headers=headers)
        except httpx.TimeoutException as exc:
            return _Retry("timeout", type(exc).__name__)
        except httpx.ConnectError as exc:
            return _Retry("connect", type(exc).__name__)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise SourceError(f"GET {where}: not a usable URL", code="BAD_URL") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # RemoteProtocolError (closed mid-response, short body), ReadError, WriteError...
            return _Retry("dropped", type(exc).__name__)
        return self._judge(response, where)

    def _judge(
        self, response: httpx.Response, where: str
    ) -> tuple[Any, httpx.Headers, int] | _Retry:
        status = response.status_code
        if status == 304:
            return None, response.headers, status
        if status == 429 or (status == 503 and "retry-after" in response.headers):
            asked = retry_after_seconds(response.headers.get("retry-after"))
            return _Retry("http_429" if status == 429 else "http_5xx", str(status), asked)
        if status >= 500:
            return _Retry("http_5xx", str(status))
        if status == 408:
            return _Retry("timeout", str(status))
        if status >= 400:
            raise SourceError(f"GET {where}: HTTP {status}", code=f"HTTP_{status}")
        if status >= 300:
            raise SourceError(
                f"GET {where}: HTTP {status} redirect; configure the final URL",
                code="HTTP_REDIRECT",
            )
        if status == 204 or not response.content:
            if status == 204:
                return None, response.headers, status
            return _Retry("malformed", "an empty body")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return _Retry("malformed", "a body that is not JSON")
        return body, response.headers, status


def dig(body: Any, path: str) -> Any:
    """The value at a dotted path ("meta.next"); "" is the body itself; None if absent."""
    if not path:
        return body
    value = body
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def is_later(candidate: Any, current: Any) -> bool:
    """Is `candidate` a later version/update time than `current` (None: nothing yet)?

    Numbers compare as numbers, ISO 8601 times as instants (offsets differ between systems:
    "2024-05-01T08:00:00+08:00" is earlier than "2024-05-01T01:00:00Z"), other text as text."""
    if candidate is None or isinstance(candidate, bool):
        return False
    if current is None:
        return isinstance(candidate, (int, float, str)) and candidate == candidate  # not NaN
    if isinstance(candidate, (int, float)) and isinstance(current, (int, float)):
        return not math.isnan(candidate) and candidate > current
    if isinstance(candidate, str) and isinstance(current, str):
        a, b = _instant(candidate), _instant(current)
        if a is not None and b is not None:
            return a > b
        return candidate > current
    return False


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    # A time without an offset is taken as UTC so it compares with those that have one.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
