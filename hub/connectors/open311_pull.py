"""Open311 GeoReport v2 pull: service requests from another city system's `requests.json`.

GET {base_url}/requests.json answers a JSON list of service requests (service_request_id,
status, status_notes, service_name, service_code, description, agency_responsible,
service_notice, requested_datetime, updated_datetime, expected_datetime, address, address_id,
zipcode, lat, long, media_url). Each becomes a Record whose payload is the object as received.

Options ([source] table; the fetcher options of hub/connectors/http.py apply too):

- `base_url` (required): the endpoint root, e.g. "https://city.example/open311/v2".
- `jurisdiction_id` (none): sent as `jurisdiction_id` when the server hosts several.
- `updated_param` ("updated_after"): parameter carrying the stored since. A widespread
  extension; a server that ignores it answers everything, which is only slower.
- `page_size` (100): sent as `page_size` with `page`. GridHub's own server honours both; one
  that ignores them answers the same list for every page, and the repeat ends the listing.
- `start_date` (none): ISO 8601, sent as `start_date` on the first run only (nothing stored).

Cursor: mid-listing `{"since": <since the listing started from>, "next": <next page number>,
"max": <largest updated_datetime so far>}`, then `{"since": <largest updated_datetime seen>}`
after the last page. Updated times compare as instants, whatever their offsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.connectors.http import Fetcher, check_source_options
from hub.connectors.records import SourceContext
from hub.connectors.rest import Listing, RestSource

_TEXT_OPTIONS = ("base_url", "jurisdiction_id", "updated_param", "start_date")
_OPTIONS = frozenset({*_TEXT_OPTIONS, "page_size", "seed", "since_lookback"})


def check_options(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(option, reason) for each unusable option of an Open311 source."""
    problems = check_source_options(options, own=_OPTIONS, text=_TEXT_OPTIONS)
    base_url = options.get("base_url")
    if base_url is None:
        problems.append(("base_url", "is required"))
    elif isinstance(base_url, str) and not base_url.startswith(("http://", "https://", "${")):
        problems.append(("base_url", "must be an http:// or https:// URL"))
    page_size = options.get("page_size", 100)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        problems.append(("page_size", "must be a whole number of at least 1"))
    return problems


def open_source(ctx: SourceContext) -> RestSource:
    options = ctx.options
    params: dict[str, Any] = {}
    if options.get("jurisdiction_id"):
        params["jurisdiction_id"] = options["jurisdiction_id"]
    initial: dict[str, Any] = {}
    if options.get("start_date"):
        initial["start_date"] = options["start_date"]
    listing = Listing(
        url=str(options["base_url"]).rstrip("/") + "/requests.json",
        items="",
        pagination="page",
        page_param="page",
        size_param="page_size",
        first_page=1,
        page_size=int(options.get("page_size", 100)),
        since_param=options.get("updated_param", "updated_after"),
        since_field="updated_datetime",
        since_lookback=float(options.get("since_lookback", 600)),
        params=params,
        initial_params=initial,
        # Plain GeoReport v2 servers have no paging: page 2 repeats page 1, which is the end.
        repeat_ends=True,
    )
    return RestSource(listing, Fetcher.from_context(ctx))
