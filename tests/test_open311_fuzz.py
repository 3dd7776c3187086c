"""No Open311 parameter makes /open311/v2 fail with a server error.

Every parameter of every endpoint (GET and POST, JSON and XML) gets values at the edges of what
it takes: instants at the ends of datetime's range with the widest offsets (the year 1 at +14:00
is before the year 1 in UTC), numbers past 32 and 64 bits, control characters, bytes that are
not UTF-8, over-long text. Each request goes over HTTP to the app. Nothing may answer 5xx or log
a stack trace; every refusal is the spec's error list, with the status as its code.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hub.authz import apikeys
from hub.db import Database
from tests.world import World

BASE = "/open311/v2"

EDGES: list[str | bytes] = [
    "",
    " ",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999+14:00",
    "0001-01-01T00:00:00 14:00",
    "2024-05-01T08:00:00+23:59",
    "2024-05-01T08:00:00",
    "2024-02-30T00:00:00Z",
    "-1",
    "0",
    "1e308",
    "nan",
    "inf",
    "-inf",
    str(2**31),
    str(2**63),
    "9" * 40,
    "²",
    "open,closed,open",
    ",,,",
    "a" * 5000,
    "\x00\x01\x7f",
    "\u202e\ufeff",
    "环境卫生",
    b"\xff\xfe",
    b"\xed\xa0\x80",  # a lone surrogate, encoded as UTF-8 would if it could
    "sanitation",
    "G1",
    "EV20240101ZZZZZZ",
    "ghk_AAAAAAAA_" + "x" * 43,
    "39.9",
    "116.4",
    "-91",
    "181",
]

EDGE = st.sampled_from(EDGES)
# Three parts edges to one part each of any short text and any bytes.
VALUES = st.one_of(EDGE, EDGE, EDGE, st.text(max_size=12), st.binary(max_size=6))

# Each parameter also gets values at the edges of its own kind, half the time. Hypothesis
# leans to the first value of each list: those are the widest offsets at the ends of time.
INSTANTS = st.builds(
    "{}-{:02d}-{:02d}T{:02d}:00:00{}".format,
    st.sampled_from(["0001", "9999", "1969", "2024"]),
    st.sampled_from([1, 12]),
    st.sampled_from([1, 31]),
    st.sampled_from([0, 23]),
    st.sampled_from(["+14:00", "-14:00", "Z", " 08:00", "+23:59", "", "+99:00"]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
KINDS: dict[str, st.SearchStrategy[str]] = {
    "start_date": INSTANTS,
    "end_date": INSTANTS,
    "updated_after": INSTANTS,
    "page": NUMBERS,
    "page_size": NUMBERS,
    "lat": NUMBERS,
    "long": NUMBERS,
}


def values_for(parameter: str) -> st.SearchStrategy[str | bytes]:
    kind = KINDS.get(parameter)
    return VALUES if kind is None else st.one_of(kind, VALUES)


LIST_PARAMETERS = (
    "jurisdiction_id",
    "service_request_id",
    "service_code",
    "status",
    "start_date",
    "end_date",
    "updated_after",
    "page",
    "page_size",
)
POST_PARAMETERS = (
    "jurisdiction_id",
    "service_code",
    "attribute[grid_code]",
    "grid_code",
    "address_id",
    "address_string",
    "lat",
    "long",
    "description",
    "media_url",
    "email",
    "device_id",
    "account_id",
    "first_name",
    "last_name",
    "phone",
)
FORMATS = ("json", "xml", "html", "")


def query(parameters: dict[str, str | bytes]) -> str:
    # urlencode takes bytes as they are: a value that is not UTF-8 reaches the server as such.
    return urlencode(parameters, quote_via=quote)


def path_segment(value: str | bytes) -> str:
    return quote(value, safe="")


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in caplog.records
        if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR
    ]


def problem(response: httpx.Response, fmt: str) -> str | None:
    """What is wrong with an answer: a server error, or a refusal not in the spec's format."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code < 400 or fmt == "xml":
        return None
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} is not the spec's error list: {response.text[:200]}"
    if not (
        isinstance(body, list)
        and len(body) == 1
        and body[0].get("code") == response.status_code
        and isinstance(body[0].get("description"), str)
    ):
        return f"HTTP {response.status_code} is not the spec's error list: {body!r:.200}"
    return None


INSTANT_PARAMETERS = ("start_date", "end_date", "updated_after")
# Valid ISO 8601 with an offset, but their UTC instant is outside what a datetime can hold.
UNREPRESENTABLE = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_instants_past_the_ends_of_time_are_400(
    app: Any, world: World, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for name in INSTANT_PARAMETERS:
            for value in UNREPRESENTABLE:
                response = await http.get(f"{BASE}/requests.{fmt}", params={name: value})
                assert response.status_code == 400, (name, value, response.text)
                if fmt == "json":
                    (error,) = response.json()
                    assert error["code"] == 400 and name in error["description"]
    assert tracebacks(caplog) == []


@pytest.fixture
async def api_key(db: Database, world: World) -> str:
    async with db.transaction() as session:
        _, key = await apikeys.create(session, name="fuzz-desk", role="dispatcher")
    return key


# A POST that would succeed: each hostile value replaces one of these (or joins them).
PLAUSIBLE_POST: dict[str, str | bytes] = {
    "service_code": "sanitation",
    "attribute[grid_code]": "G1",
    "description": "楼道里堆满了垃圾",
}


def targets(api_key: str) -> list[tuple[str, str, str, dict[str, str | bytes]]]:
    """(method, resource, parameter, the other parameters) for every parameter of every
    endpoint; `{}` in the resource is where a hostile path segment goes."""
    found: list[tuple[str, str, str, dict[str, str | bytes]]] = []
    for resource in ("discovery", "services", "requests"):
        found.append(("GET", resource, "jurisdiction_id", {}))
    for resource in ("services/{}", "requests/{}", "tokens/{}"):
        found.append(("GET", resource, "", {}))
        found.append(("GET", resource, "jurisdiction_id", {}))
    found += [("GET", "requests", name, {}) for name in LIST_PARAMETERS]
    plausible = {**PLAUSIBLE_POST, "api_key": api_key}
    found += [("POST", "requests", name, plausible) for name in (*POST_PARAMETERS, "api_key")]
    return found


@hypothesis_settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_open311_parameter_is_a_server_error(
    data: st.DataObject, app: Any, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    failures: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for method, resource, parameter, others in targets(api_key):
            fmt = data.draw(st.sampled_from(FORMATS))
            value = data.draw(values_for(parameter))
            segment = path_segment(value if not parameter else "EV20240101ZZZZZZ")
            url = f"{BASE}/{resource.format(segment)}" + (f".{fmt}" if fmt else "")
            given = {**others, parameter: value} if parameter else dict(others)
            body = query(given) if method == "POST" else None
            if method == "GET" and given:
                url += "?" + query(given)
            headers = {"content-type": "application/x-www-form-urlencoded"} if body else {}
            response = await http.request(method, url, content=body, headers=headers)
            found = problem(response, fmt) or "; ".join(tracebacks(caplog))
            if found:
                failures.append(f"{method} {url[:300]} {body or ''!s:.300}: {found}")
            caplog.clear()
    assert not failures, "\n".join(failures)
