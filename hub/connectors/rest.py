"""REST JSON pull: page through a departmental system's JSON listing.

Options ([source] table; the fetcher options of hub/connectors/http.py apply too):

- `url` (required): the listing's URL (http or https).
- `items` (""): dotted path to the list of records in the body ("data", "result.rows");
  "" means the body is the list.
- `pagination` ("none"): "page", "offset", "cursor", "link" or "none" (one request).
- `page_param` ("page"), `size_param` ("page_size"): page number and size (page).
- `offset_param` ("offset"), `limit_param` ("limit"): offset and size (offset).
- `cursor_param` ("cursor"): parameter carrying the server's cursor token (cursor).
- `next_cursor` (""): dotted path in the body to the next cursor token (cursor: required), or
  to the next page's URL (link; by default the `Link: <...>; rel="next"` header).
- `first_page` (1): the number of the first page (page).
- `page_size` (the definition's `page_size`): records asked for per request.
- `since_param` (none): parameter sent with the stored since value ("updated_since").
- `since_field` (none): record field (dotted path) holding its update time or version; the
  largest seen becomes the next since. Numbers compare as numbers, ISO 8601 times as instants.
- `since_lookback` (600): seconds the next since steps back from the newest time seen, so that an
  update made during a listing to a page already read is read by the next run. The source's
  since parameter must be inclusive (>=).
- `etag` (false): send `If-None-Match` with the stored ETag; a 304 means nothing changed.

A listing starts from the stored since (or from nothing) and each page yields the cursor `{"since":
<the since the listing started from>, "next": <page number, offset, cursor token or URL>}`, so a run
that stops mid-listing resumes that same listing. The last page's cursor is `{"since": <largest
since_field seen less since_lookback, or the old since>}` with no "next": the next run starts a new
listing from there. With `etag`, cursors carry "etag" (the first response's ETag); with
`since_field`, mid-listing cursors carry "max" (the largest since so far), so a resumed listing
still ends at the right since. An empty page, or no next cursor/link, ends a listing. Items that are
not JSON objects are quarantined as Malformed. Overlapping pages are harmless (the engine is
idempotent); a server that hands out a cursor or next URL it has handed out already, or the same
page again, is stopped with SourceError PAGINATION_LOOP.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from hub.connectors.http import Fetcher, check_source_options, dig, is_later, safe_url
from hub.connectors.records import Malformed, Page, Record, SourceContext, SourceError

PAGINATIONS = ("page", "offset", "cursor", "link", "none")

_TEXT_OPTIONS = (
    "url",
    "items",
    "pagination",
    "page_param",
    "size_param",
    "offset_param",
    "limit_param",
    "cursor_param",
    "next_cursor",
    "since_param",
    "since_field",
)
_OPTIONS = frozenset({*_TEXT_OPTIONS, "first_page", "page_size", "etag", "seed", "since_lookback"})
_LINK = re.compile(r"<([^>]*)>([^<]*)")


@dataclass(frozen=True, slots=True)
class Listing:
    """How to read one paged listing; the REST kind builds it from options, Open311 from its
    own."""

    url: str
    items: str = ""
    pagination: str = "none"
    page_param: str = "page"
    size_param: str = "page_size"
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    next_cursor: str = ""
    first_page: int = 1
    page_size: int = 100
    since_param: str | None = None
    since_field: str | None = None
    # Seconds the next since steps back from the newest time seen (times only, not versions):
    # an update made during a listing to a record on a page already read is older than records
    # read after it, and would be skipped by a since equal to the newest. Records read twice
    # cost a digest comparison each. The source's since parameter must be inclusive (>=).
    since_lookback: float = 600.0
    etag: bool = False
    # Sent on every request a listing builds (not on a next URL the server gave).
    params: Mapping[str, Any] = field(default_factory=dict)
    # Also sent when the listing starts from no since (Open311's start_date on a first run).
    initial_params: Mapping[str, Any] = field(default_factory=dict)
    # A page identical to the one before ends the listing instead of PAGINATION_LOOP: for
    # servers that may ignore paging parameters and answer everything every time.
    repeat_ends: bool = False


def check_options(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, reason) for each unusable option of a REST source."""
    problems = check_source_options(options, own=_OPTIONS, text=_TEXT_OPTIONS)
    url = options.get("url")
    if url is None:
        problems.append(("url", "is required"))
    elif isinstance(url, str) and not _looks_like_url(url):
        problems.append(("url", "must be an http:// or https:// URL"))
    pagination = options.get("pagination", "none")
    if pagination not in PAGINATIONS:
        problems.append(("pagination", f"must be one of {', '.join(PAGINATIONS)}"))
    if pagination == "cursor" and not options.get("next_cursor"):
        problems.append(("next_cursor", "is required with cursor pagination"))
    for key in ("first_page", "page_size"):
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append((key, "must be a whole number"))
    if isinstance(options.get("page_size"), int) and options["page_size"] < 1:
        problems.append(("page_size", "must be at least 1"))
    if "etag" in options and not isinstance(options["etag"], bool):
        problems.append(("etag", "must be true or false"))
    return problems


def _looks_like_url(text: str) -> bool:
    # "${HEALTH_URL}" is resolved when the run starts; check what is known now.
    return text.startswith(("http://", "https://", "${"))


def open_source(ctx: SourceContext) -> RestSource:
    options = ctx.options
    listing = Listing(
        url=options["url"],
        items=options.get("items", ""),
        pagination=options.get("pagination", "none"),
        page_param=options.get("page_param", "page"),
        size_param=options.get("size_param", "page_size"),
        offset_param=options.get("offset_param", "offset"),
        limit_param=options.get("limit_param", "limit"),
        cursor_param=options.get("cursor_param", "cursor"),
        next_cursor=options.get("next_cursor", ""),
        first_page=options.get("first_page", 1),
        page_size=options.get("page_size", ctx.page_size),
        since_param=options.get("since_param"),
        since_field=options.get("since_field"),
        since_lookback=float(options.get("since_lookback", 600)),
        etag=bool(options.get("etag", False)),
    )
    return RestSource(listing, Fetcher.from_context(ctx))


class RestSource:
    """Pages of one listing (see the module docstring for cursors)."""

    def __init__(self, listing: Listing, fetcher: Fetcher) -> None:
        self.listing = listing
        self.fetcher = fetcher

    async def pages(self, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        async with self.fetcher:
            async for page in _ListingRun(self.listing, self.fetcher, cursor).pages():
                yield page


class _ListingRun:
    """One pass over a listing, from a cursor: the state that lives between its requests."""

    def __init__(self, listing: Listing, fetcher: Fetcher, cursor: dict[str, Any] | None) -> None:
        cursor = cursor or {}
        self.listing = listing
        self.fetcher = fetcher
        self.since = cursor.get("since")
        self.next: Any = cursor.get("next")
        self.resuming = self.next is not None
        # Starting afresh: the stored ETag is what we send; resuming: it is this listing's own.
        self.sent_etag: str | None = cursor.get("etag") if listing.etag else None
        self.etag: str | None = self.sent_etag if self.resuming else None
        self.high: Any = cursor.get("max") if self.resuming else None
        self.handed_out: set[str] = set()
        if self.resuming and listing.pagination in ("cursor", "link"):
            self.handed_out.add(str(self.next))
        self.previous_digest: bytes | None = None
        self.count = 0

    async def pages(self) -> AsyncIterator[Page]:
        while True:
            first = self.count == 0
            self.count += 1
            url, params, label = self._request()
            headers = {}
            if first and not self.resuming and self.sent_etag:
                headers["If-None-Match"] = self.sent_etag
            body, response_headers, status = await self.fetcher.get_json(
                url, params=params, headers=headers
            )
            if status == 304:
                if headers:
                    return  # nothing changed since the stored ETag: the stored cursor stands
                raise SourceError(f"GET {safe_url(url)}: 304 to a plain GET", code="BAD_RESPONSE")
            if first and not self.resuming and self.listing.etag:
                self.etag = response_headers.get("etag")
            items = self._items(body, url)
            records, malformed = self._convert(items, label)
            following = self._following(url, body, response_headers, items)
            if self._repeated(items):
                if not self.listing.repeat_ends:
                    raise self._loop(url)
                following = None
                records, malformed = [], []
            if following is None:
                yield Page(records, self._final_cursor(), malformed)
                return
            key = str(following)
            if key in self.handed_out:
                raise self._loop(url)
            if self.listing.pagination in ("cursor", "link"):
                self.handed_out.add(key)
            self.next = following
            yield Page(records, self._middle_cursor(), malformed)

    def _request(self) -> tuple[str, dict[str, Any] | None, str]:
        listing = self.listing
        style = listing.pagination
        if style == "link" and self.next is not None:
            return str(self.next), None, f"page {self.count}"
        params: dict[str, Any] = dict(listing.params)
        if self.since is None:
            params.update(listing.initial_params)
        elif listing.since_param:
            params[listing.since_param] = self.since
        label = f"page {self.count}"
        if style == "page":
            number = self.next if self.next is not None else listing.first_page
            params[listing.page_param] = number
            params[listing.size_param] = listing.page_size
            label = f"page {number}"
        elif style == "offset":
            offset = self.next if self.next is not None else 0
            params[listing.offset_param] = offset
            params[listing.limit_param] = listing.page_size
            label = f"offset {offset}"
        elif style == "cursor" and self.next is not None:
            params[listing.cursor_param] = self.next
        return listing.url, params, label

    def _items(self, body: Any, url: str) -> list[Any]:
        items = dig(body, self.listing.items)
        if items is None and self.listing.items:
            return []  # {"data": null} on an empty listing
        if not isinstance(items, list):
            path = self.listing.items or "the body"
            raise SourceError(
                f"GET {safe_url(url)}: {path} is not a list of records", code="BAD_RESPONSE"
            )
        return items

    def _convert(self, items: list[Any], label: str) -> tuple[list[Record], list[Malformed]]:
        records: list[Record] = []
        malformed: list[Malformed] = []
        for number, item in enumerate(items, start=1):
            position = f"{label}, item {number}"
            if not isinstance(item, dict):
                malformed.append(Malformed(item, position, "not a JSON object"))
                continue
            records.append(Record(item, position))
            if self.listing.since_field:
                value = dig(item, self.listing.since_field)
                if is_later(value, self.high):
                    self.high = value
        return records, malformed

    def _following(
        self, url: str, body: Any, headers: httpx.Headers, items: list[Any]
    ) -> Any | None:
        """What fetches the next page, or None when this page ends the listing."""
        listing = self.listing
        if not items or listing.pagination == "none":
            return None
        if listing.pagination == "page":
            number = self.next if self.next is not None else listing.first_page
            return int(number) + 1
        if listing.pagination == "offset":
            return int(self.next or 0) + len(items)
        if listing.pagination == "cursor":
            token = dig(body, listing.next_cursor)
            return token if token not in (None, "") else None
        link = dig(body, listing.next_cursor) if listing.next_cursor else _next_link(headers)
        if not isinstance(link, str) or not link:
            return None
        target = httpx.URL(url).join(link)
        if (target.scheme, target.host, target.port) != (
            httpx.URL(url).scheme,
            httpx.URL(url).host,
            httpx.URL(url).port,
        ):
            # Following it would send our auth headers to another host.
            raise SourceError(
                f"GET {safe_url(url)}: the next page is on another host ({safe_url(target)})",
                code="PAGINATION_FOREIGN",
            )
        return str(target)

    def _repeated(self, items: list[Any]) -> bool:
        """Is this page the very page before it (a server ignoring the paging parameters)?"""
        if not items or self.listing.pagination not in ("page", "offset", "link"):
            return False
        digest = hashlib.blake2b(orjson.dumps(items), digest_size=16).digest()
        repeated = digest == self.previous_digest
        self.previous_digest = digest
        return repeated

    def _loop(self, url: str) -> SourceError:
        return SourceError(
            f"GET {safe_url(url)}: the server keeps handing out the same page "
            f"({self.listing.pagination} pagination); stopped",
            code="PAGINATION_LOOP",
        )

    def _middle_cursor(self) -> dict[str, Any]:
        cursor: dict[str, Any] = {"since": self.since, "next": self.next}
        if self.listing.etag:
            cursor["etag"] = self.etag
        if self.listing.since_field:
            cursor["max"] = self.high
        return cursor

    def _final_cursor(self) -> dict[str, Any]:
        high = looked_back(self.high, self.listing.since_lookback)
        since = high if is_later(high, self.since) else self.since
        cursor: dict[str, Any] = {"since": since}
        if self.listing.etag:
            cursor["etag"] = self.etag
        return cursor


def looked_back(value: Any, seconds: float) -> Any:
    """An ISO 8601 time `seconds` earlier, written in the same style (a trailing Z stays a Z);
    anything else (a version number, unreadable text) unchanged."""
    if not isinstance(value, str) or seconds <= 0:
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    earlier = moment - timedelta(seconds=seconds)
    if value.endswith("Z"):
        return earlier.replace(tzinfo=None).isoformat() + "Z"
    return earlier.isoformat()


def _next_link(headers: httpx.Headers) -> str | None:
    """The rel="next" target of a Link header (RFC 8288)."""
    for value in headers.get_list("link"):
        for target, parameters in _LINK.findall(value):
            for param in parameters.strip().rstrip(",").split(";"):
                name, _, rel = param.partition("=")
                if name.strip().lower() == "rel" and "next" in rel.strip().strip('"').split():
                    return str(target)
    return None
