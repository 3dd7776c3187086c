"""The HTTP pull kinds against a fake departmental system: every pagination style, resume from a
cursor, ETag, and the faults a real system throws (5xx, 429, slow, cut and malformed bodies, dead
servers, missing auth, pagination loops)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from hub.connectors import open311_pull, rest
from hub.connectors.http import CircuitBreaker, retry_after_seconds
from hub.connectors.records import Page, SourceContext, SourceError
from tests.fake_systems import FakeSystem, FaultPlan, make_records, make_requests

# Tiny backoff so fault tests stay fast; seeded jitter so they repeat.
FAST: dict[str, Any] = {"backoff_base": 0.001, "backoff_cap": 0.01, "timeout_seconds": 2, "seed": 3}
STYLES: dict[str, dict[str, Any]] = {
    "page": {"pagination": "page", "items": "data"},
    "offset": {"pagination": "offset", "items": "data"},
    "cursor": {"pagination": "cursor", "items": "data", "next_cursor": "meta.next"},
    "link": {"pagination": "link", "items": "data"},
    "none": {"pagination": "none", "items": ""},
}
PATHS = {
    "page": "/api/page",
    "offset": "/api/offset",
    "cursor": "/api/cursor",
    "link": "/api/link",
    "none": "/api/all",
}


@pytest.fixture
def fake() -> Iterator[FakeSystem]:
    with FakeSystem(records=make_records(25), page_size=10) as system:
        yield system


def rest_context(
    fake: FakeSystem, style: str = "page", *, headers: dict[str, str] | None = None, **options: Any
) -> SourceContext:
    # since_lookback 0: these tests follow the since exactly (the lookback has its own test).
    chosen = {
        "url": fake.url + PATHS[style],
        **STYLES[style],
        "page_size": 10,
        "since_lookback": 0,
        **FAST,
        **options,
    }
    assert rest.check_options(chosen) == []
    return SourceContext(connector="test", options=chosen, headers=headers or {})


async def read(
    ctx: SourceContext, cursor: dict[str, Any] | None = None, *, kind: Any = rest
) -> list[Page]:
    source = kind.open_source(ctx)
    return [page async for page in source.pages(cursor)]


def ids(pages: list[Page]) -> list[str]:
    return [record.payload["id"] for page in pages for record in page.records]


class TestPagination:
    @pytest.mark.parametrize("style", list(STYLES))
    async def test_reads_every_record_as_served(self, fake: FakeSystem, style: str) -> None:
        pages = await read(rest_context(fake, style, since_field="updated_at"))

        assert ids(pages) == [record["id"] for record in fake.records]
        assert pages[-1].cursor == {"since": fake.records[-1]["updated_at"]}
        assert all(page.cursor and "next" in page.cursor for page in pages[:-1])
        assert pages[0].records[0].position.endswith("item 1")

    @pytest.mark.parametrize("style", ["offset", "cursor", "link"])
    async def test_partial_and_overlapping_pages_lose_nothing(
        self, fake: FakeSystem, style: str
    ) -> None:
        fake.plan = FaultPlan(partial=True, overlap=2)

        pages = await read(rest_context(fake, style))

        assert set(ids(pages)) == {record["id"] for record in fake.records}
        assert len(ids(pages)) > len(fake.records)  # the overlap did come back twice

    async def test_out_of_order_records_end_at_the_newest(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(shuffle=True, seed=5)

        pages = await read(rest_context(fake, "offset", since_field="updated_at"))

        assert ids(pages) != [record["id"] for record in fake.records]
        assert pages[-1].cursor == {"since": max(r["updated_at"] for r in fake.records)}

    async def test_items_that_are_not_objects_are_malformed(self, fake: FakeSystem) -> None:
        fake.records.insert(3, 42)  # type: ignore[arg-type]
        fake.plan = FaultPlan(extra_fields={"unexpected": True}, missing_fields=("name",))

        pages = await read(rest_context(fake, "page"))

        assert [(m.raw, m.position) for page in pages for m in page.malformed] == [
            (42, "page 1, item 4")
        ]
        assert len(ids(pages)) == 25
        assert all(
            r.payload["unexpected"] and "name" not in r.payload for p in pages for r in p.records
        )

    @pytest.mark.parametrize("style", ["page", "cursor", "link"])
    async def test_a_server_handing_out_the_same_page_again_is_stopped(
        self, fake: FakeSystem, style: str
    ) -> None:
        fake.plan = FaultPlan(loop=True)

        with pytest.raises(SourceError) as raised:
            await read(rest_context(fake, style))

        assert raised.value.code == "PAGINATION_LOOP"
        assert len(fake.seen) <= 3


class TestResume:
    async def test_a_cursor_mid_listing_continues_that_listing(self, fake: FakeSystem) -> None:
        ctx = rest_context(fake, "page", since_param="updated_since", since_field="updated_at")
        source = rest.open_source(ctx)
        first = []
        async for page in source.pages(None):
            first.append(page)
            if len(first) == 2:
                break  # the run stops after two committed pages
        cursor = first[-1].cursor
        assert cursor == {"since": None, "next": 3, "max": fake.records[19]["updated_at"]}

        asked_before = len(fake.seen)

        rest_of_it = await read(ctx, cursor)

        assert ids(first) + ids(rest_of_it) == [record["id"] for record in fake.records]
        assert rest_of_it[-1].cursor == {"since": fake.records[-1]["updated_at"]}
        assert [seen.params["page"] for seen in fake.seen[asked_before:]] == ["3", "4"]

    async def test_the_next_listing_starts_from_the_stored_since(self, fake: FakeSystem) -> None:
        ctx = rest_context(fake, "cursor", since_param="updated_since", since_field="updated_at")
        done = await read(ctx)
        fake.records.extend(make_records(3, start="2024-06-01T00:00:00Z", prefix="n"))

        pages = await read(ctx, done[-1].cursor)

        # The fake filters inclusively: the newest old record comes back once, harmlessly.
        assert ids(pages) == ["r0025", "n0001", "n0002", "n0003"]
        assert fake.seen[-1].params["updated_since"] == "2024-05-01T00:25:00Z"
        assert pages[-1].cursor == {"since": fake.records[-1]["updated_at"]}

    async def test_an_unchanged_etag_yields_nothing(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(etag=True)
        ctx = rest_context(fake, "page", etag=True, since_field="updated_at")
        done = await read(ctx)
        assert done[-1].cursor is not None and done[-1].cursor["etag"]

        again = await read(ctx, done[-1].cursor)

        assert again == []
        assert fake.seen[-1].headers["if-none-match"] == done[-1].cursor["etag"]
        assert fake.seen[-1].answer == "304"


class TestFaults:
    async def test_a_flaky_slow_source_still_gives_everything(self) -> None:
        plan = FaultPlan(seed=6, error_rate=0.1, slow_rate=0.1, slow_seconds=0.4)
        with FakeSystem(records=make_records(60), page_size=5, plan=plan) as fake:
            ctx = rest_context(fake, "page", page_size=5, timeout_seconds=0.2)
            source = rest.open_source(ctx)

            pages = [page async for page in source.pages(None)]

        assert ids(pages) == [record["id"] for record in fake.records]
        assert ctx.faults.counts["http_5xx"] > 0
        assert ctx.faults.counts["timeout"] > 0
        assert source.fetcher.breaker_state == "closed"

    async def test_a_hanging_request_times_out_and_is_asked_again(self) -> None:
        # A "hang" answers only when the fake stops: leaving the block must not wait for it.
        with FakeSystem(records=make_records(5), plan=FaultPlan(script={1: "hang"})) as fake:
            ctx = rest_context(fake, "none", timeout_seconds=0.2)

            assert len(ids(await read(ctx))) == 5

        assert ctx.faults.counts == {"timeout": 1}
        assert [seen.answer for seen in fake.seen] == ["hang", "200"]

    async def test_retry_after_is_waited(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(script={2: "429"}, retry_after="1")
        ctx = rest_context(fake, "page")

        pages = await read(ctx)

        assert len(ids(pages)) == 25
        refused, retried = fake.seen[1], fake.seen[2]
        assert refused.answer == "429" and retried.params == refused.params
        assert retried.at - refused.at >= 1.0
        assert ctx.faults.counts == {"http_429": 1}

    async def test_a_malformed_body_is_asked_again(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(script={1: "malformed"})
        ctx = rest_context(fake, "offset")

        assert len(ids(await read(ctx))) == 25
        assert ctx.faults.counts == {"malformed": 1}

    async def test_dropped_connections_are_retried(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(script={1: "drop", 3: "truncate"})
        ctx = rest_context(fake, "cursor")

        assert len(ids(await read(ctx))) == 25
        assert ctx.faults.counts == {"dropped": 2}

    async def test_a_4xx_is_not_retried(self, fake: FakeSystem) -> None:
        with pytest.raises(SourceError) as raised:
            await read(rest_context(fake, "page", url=fake.url + "/api/nowhere?token=abc"))

        assert raised.value.code == "HTTP_404"
        assert len(fake.seen) == 1
        assert "token=abc" not in str(raised.value) and "/api/nowhere" in str(raised.value)

    async def test_a_dead_source_opens_the_breaker(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(status=503)
        ctx = rest_context(fake, "page", retries=10)
        source = rest.open_source(ctx)

        with pytest.raises(SourceError) as raised:
            [page async for page in source.pages(None)]

        assert raised.value.code == "CIRCUIT_OPEN"
        assert len(fake.seen) == 5  # breaker_threshold, not the 11 attempts retries allows
        assert source.fetcher.breaker_state == "open"

    async def test_retries_run_out(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(status=500)
        ctx = rest_context(fake, "page", retries=2, breaker_threshold=50)

        with pytest.raises(SourceError) as raised:
            await read(ctx)

        assert raised.value.code == "RETRIES_EXHAUSTED"
        assert "500 after 3 attempts" in str(raised.value)
        assert len(fake.seen) == 3

    async def test_a_refused_connection_is_a_connect_fault(self) -> None:
        with FakeSystem() as gone:
            url = gone.url + "/api/all"
        ctx = SourceContext(connector="t", options={"url": url, "retries": 1, **FAST})

        with pytest.raises(SourceError) as raised:
            await read(ctx)

        assert raised.value.code == "RETRIES_EXHAUSTED"
        assert ctx.faults.counts == {"connect": 1}


class TestAuth:
    async def test_the_auth_header_is_sent(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(require_headers={"authorization": "Bearer s3cret"})

        pages = await read(rest_context(fake, "page", headers={"Authorization": "Bearer s3cret"}))

        assert len(ids(pages)) == 25
        assert {seen.headers["authorization"] for seen in fake.seen} == {"Bearer s3cret"}

    async def test_a_wrong_secret_fails_without_showing_it(self, fake: FakeSystem) -> None:
        fake.plan = FaultPlan(require_headers={"authorization": "Bearer s3cret"})

        with pytest.raises(SourceError) as raised:
            await read(rest_context(fake, "page", headers={"Authorization": "Bearer wr0ng"}))

        assert raised.value.code == "HTTP_401"
        assert "wr0ng" not in str(raised.value) and "Bearer" not in str(raised.value)
        assert len(fake.seen) == 1


class TestOpen311:
    def context(self, fake: FakeSystem, **options: Any) -> SourceContext:
        chosen = {
            "base_url": fake.url + "/open311/v2/",
            "page_size": 10,
            "since_lookback": 0,
            **FAST,
            **options,
        }
        assert open311_pull.check_options(chosen) == []
        return SourceContext(connector="city", options=chosen)

    async def test_pages_and_cursor(self) -> None:
        requests = make_requests(25)
        with FakeSystem(requests=requests, jurisdiction="city.example") as fake:
            ctx = self.context(
                fake, jurisdiction_id="city.example", start_date="2024-04-30T00:00:00Z"
            )
            pages = await read(ctx, kind=open311_pull)
            newest = requests[-1]["updated_datetime"]
            assert [page.cursor for page in pages] == [
                {"since": None, "next": 2, "max": requests[9]["updated_datetime"]},
                {"since": None, "next": 3, "max": requests[19]["updated_datetime"]},
                {"since": None, "next": 4, "max": newest},
                {"since": newest},  # page 4 came back empty: the end
            ]
            assert [r.payload for p in pages for r in p.records] == requests
            assert pages[2].records[4].position == "page 3, item 5"
            assert fake.seen[0].params == {
                "jurisdiction_id": "city.example",
                "start_date": "2024-04-30T00:00:00Z",
                "page": "1",
                "page_size": "10",
            }

            again = await read(ctx, pages[-1].cursor, kind=open311_pull)

            assert [r.payload["service_request_id"] for p in again for r in p.records] == [
                "SR00025"
            ]
            assert fake.seen[-1].params["updated_after"] == newest
            assert "start_date" not in fake.seen[-1].params

    async def test_a_server_without_paging_is_read_once(self) -> None:
        requests = make_requests(15)
        with FakeSystem(requests=requests, open311_pages=False) as fake:
            pages = await read(self.context(fake), kind=open311_pull)

        assert [r.payload for p in pages for r in p.records] == requests
        assert pages[-1].cursor == {"since": requests[-1]["updated_datetime"]}
        assert len(fake.seen) == 2  # page 2 repeated page 1: that was everything

    async def test_updated_times_compare_as_instants(self) -> None:
        requests = make_requests(2)
        # 09:00 in Beijing is 01:00 UTC: earlier than the other request's 00:02 UTC? No, later.
        requests[0]["updated_datetime"] = "2024-05-01T09:00:00+08:00"
        with FakeSystem(requests=requests) as fake:
            pages = await read(self.context(fake), kind=open311_pull)

        assert pages[-1].cursor == {"since": "2024-05-01T09:00:00+08:00"}


class TestBreaker:
    def test_a_flaky_source_never_opens_it(self) -> None:
        breaker = CircuitBreaker(threshold=5, cooldown=30)
        rng = random.Random(1)
        for _ in range(100_000):
            if rng.random() < 0.1:
                breaker.failed()
            else:
                breaker.succeeded()
            assert breaker.state == "closed"

    def test_it_half_opens_after_the_cooldown(self) -> None:
        now = [0.0]
        breaker = CircuitBreaker(threshold=3, cooldown=30, clock=lambda: now[0])
        for _ in range(3):
            breaker.failed()
        assert breaker.state == "open" and not breaker.allow()
        now[0] = 31.0
        assert breaker.state == "half_open"
        assert breaker.allow() and not breaker.allow()  # one trial at a time
        breaker.failed()
        assert breaker.state == "open"
        now[0] = 62.0
        assert breaker.allow()
        breaker.succeeded()
        assert breaker.state == "closed"


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert (
        retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now)
        == 90.0
    )
    assert (
        retry_after_seconds(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now)
        == 0.0
    )
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, ("url", "is required")),
        ({"url": "ftp://x"}, ("url", "must be an http:// or https:// URL")),
        (
            {"url": "http://x", "pagination": "pages"},
            ("pagination", "must be one of page, offset, cursor, link, none"),
        ),
        (
            {"url": "http://x", "pagination": "cursor"},
            ("next_cursor", "is required with cursor pagination"),
        ),
        ({"url": "http://x", "retries": "5"}, ("retries", "must be an integer")),
        ({"url": "http://x", "etag": "yes"}, ("etag", "must be true or false")),
        ({"url": "http://x", "pagesize": 5}, ("pagesize", "unknown option")),
    ],
)
def test_rest_options_are_checked(options: dict[str, Any], problem: tuple[str, str]) -> None:
    assert problem in rest.check_options(options)


def test_open311_options_are_checked() -> None:
    assert ("base_url", "is required") in open311_pull.check_options({})
    assert open311_pull.check_options({"base_url": "${CITY_URL}"}) == []
