"""What every source kind yields to the engine: pages of raw records, each with its resume point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Record:
    """One record as the source gave it (decoded, not yet mapped).

    `payload` must be JSON-able: it is what a quarantine keeps, and what a replay maps again.
    `position` says where it came from for operators: "line 42", "page 3, item 7"."""

    payload: dict[str, Any]
    position: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """Something the source sent that is not even a record (a CSV row with too many cells, a
    JSON item that is not an object): quarantined as it came, never dropped."""

    raw: Any
    position: str
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """A batch the engine commits at once.

    `cursor` is where the next run resumes once this page has committed (None: nothing to
    resume from, e.g. a source without incremental reads). The engine stores it in the same
    transaction as the page's writes, so a crash never skips or repeats a committed page."""

    records: list[Record]
    cursor: dict[str, Any] | None
    malformed: list[Malformed] = field(default_factory=list)


class Source(Protocol):
    """A source kind for one connector definition.

    `pages(cursor)` reads from `cursor` (None: from the start) and yields pages in order. Faults
    it cannot get past after its retries raise SourceError; pages already yielded stay
    committed, and the next run resumes after the last one."""

    def pages(self, cursor: dict[str, Any] | None) -> AsyncIterator[Page]: ...


class SourceError(Exception):
    """The source failed for good in this run (retries exhausted, breaker open, bad config)."""

    def __init__(self, message: str, *, code: str = "SOURCE_FAILED") -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Faults:
    """What went wrong on the wire during a run and was retried: shown by `gridhub sync status`."""

    counts: dict[str, int] = field(default_factory=dict)

    def note(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a kind gets to open its source with.

    `options` is the definition's [source] table with `${ENV}` references already resolved;
    `headers` are the auth headers built from the environment (never from the file);
    `faults` is where the kind counts what it retried; `page_size` is the engine's batch size."""

    connector: str
    options: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    page_size: int = 500
