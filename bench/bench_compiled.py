"""List pages through /graphql against hand-written JSON endpoints serving the same JSON from the
same database (bench/plain_app.py), in the same run: compiled execution, the normal executor,
and the hand-written baseline. Prints medians and ratios; asserts nothing (but that each page
gives the same data both ways).

    python bench/bench_compiled.py                        # 10k residents, SQLite, in-process and HTTP
    python bench/bench_compiled.py --db postgresql://postgres@127.0.0.1/bench
    python bench/bench_compiled.py --sizes 10000,1000000 --no-http   # page cost vs table size

In-process: every request goes through the whole ASGI app, called directly (no client, no
sockets); the three sides alternate request by request, so machine noise hits all of them.
Over HTTP: one uvicorn worker (uvloop + httptools) in a subprocess, 16 concurrent connections
from an httpx client in this process; compiled execution against the baseline, alternating.

Pages that show sensitive or masked fields append an access-log record on both sides: a
hand-written endpoint serving ID numbers must keep the same log (plain_app.py). The table says
which pages do; the record is one small write transaction, the same on both sides.

Also printed: how many of the demo clients' queries (schema/examples) and of the pages' persisted
operations (hub/web/operations) compile, and why the others do not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from graphql import OperationDefinitionNode, parse

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import asgi_call, prepare, rate, start_server
from plain_app import MASKED_GRID, bench_settings, build

from hub.api.compiled.compiler import compile_plan, fragments_of
from hub.api.compiled.plans import Delegated, NotCompilable
from hub.authz.identity import issue_token
from hub.config import Settings

SECRET = "bench-secret-for-the-compiled-benchmark-only"
ROOT = Path(__file__).resolve().parent.parent
RESIDENT_FIELDS = (
    "id name gender birthDate idNumber phone address householdCode createdAt updatedAt"
)
EVENT_FIELDS = "id code title status category severity reportedAt deadline updatedAt version"
RELATIONS = (
    "grid { code name } reporter { __typename ... on Member { name } ... on Resident { name } "
    "... on ExternalSystem { name } } department { code name }"
)


@dataclass(frozen=True)
class Case:
    name: str
    role: str
    query: str
    plain: str  # path?query of the hand-written endpoint
    audited: bool
    target: str  # the issue's bound, as printed
    grids: tuple[str, ...] = ()
    department: str | None = None


def residents(size: int) -> str:
    return f"{{ residents(first: {size}) {{ edges {{ node {{ {RESIDENT_FIELDS} }} }} }} }}"


CASES = [
    Case(
        "residents 100 x 10 fields",
        "public_security",
        residents(100),
        "/plain/residents?first=100",
        audited=True,
        target="<= 1.5x",
        department="public_security",
    ),
    Case(
        "residents 1000 x 10 fields",
        "public_security",
        residents(1000),
        "/plain/residents?first=1000",
        audited=True,
        target="<= 1.2x",
        department="public_security",
    ),
    Case(
        "residents 10 x 10 fields",
        "public_security",
        residents(10),
        "/plain/residents?first=10",
        audited=True,
        target="low",
        department="public_security",
    ),
    Case(
        "masked role (grid_worker) 100",
        "grid_worker",
        residents(100),
        "/plain/residents-masked?first=100",
        audited=True,
        target="<= 1.6x",
        grids=(MASKED_GRID,),
    ),
    Case(
        "events 100 x 10 fields",
        "dispatcher",
        f"{{ events(first: 100) {{ nodes {{ {EVENT_FIELDS} }} }} }}",
        "/plain/events?first=100&relations=0",
        audited=False,
        target="",
    ),
    Case(
        "events 100 + grid, reporter, dept",
        "dispatcher",
        f"{{ events(first: 100) {{ nodes {{ {EVENT_FIELDS} {RELATIONS} }} }} }}",
        "/plain/events?first=100",
        audited=True,
        target="<= 2x",
    ),
    Case(
        "events 10 x 10 fields",
        "dispatcher",
        f"{{ events(first: 10) {{ nodes {{ {EVENT_FIELDS} }} }} }}",
        "/plain/events?first=10&relations=0",
        audited=False,
        target="low",
    ),
]


def headers_for(settings: Settings, case: Case) -> dict[str, str]:
    token = issue_token(
        settings, role=case.role, subject="bench", grids=case.grids, department=case.department
    )
    return {"authorization": f"Bearer {token}", "x-gridhub-purpose": "benchmark"}


def split(path: str) -> tuple[str, bytes]:
    route, _, query = path.partition("?")
    return route, query.encode()


async def in_process(url: str, rounds: int) -> list[tuple[Case, dict[str, float]]]:
    settings = bench_settings(Settings(database_url=url, jwt_secret=SECRET))
    app = build(settings)
    compiled = app.state.compiled
    results = []
    async with app.router.lifespan_context(app):
        for case in CASES:
            headers = [(k.encode(), v.encode()) for k, v in headers_for(settings, case).items()]
            body = orjson.dumps({"query": case.query})
            route, query = split(case.plain)

            async def graphql(on: bool, body: bytes = body, headers: Any = headers) -> bytes:
                compiled.enabled = on
                return await asgi_call(app, "POST", "/graphql", body=body, headers=headers)

            async def plain(route: str = route, query: bytes = query) -> bytes:
                return await asgi_call(app, "GET", route, query=query)

            answer = orjson.loads(await graphql(True))
            if "errors" in answer or answer != orjson.loads(await plain()):
                raise SystemExit(f"{case.name}: the two endpoints disagree, or GraphQL failed")
            if orjson.loads(await graphql(False)) != answer:
                raise SystemExit(f"{case.name}: compiled and normal execution disagree")
            calls: dict[str, Callable[[], Awaitable[bytes]]] = {
                "compiled": lambda: graphql(True),
                "normal": lambda: graphql(False),
                "plain": plain,
            }
            results.append((case, await timed(calls, rounds)))
        compiled.enabled = True
    return results


async def timed(calls: dict[str, Callable[[], Awaitable[bytes]]], rounds: int) -> dict[str, float]:
    for call in calls.values():
        for _ in range(10):
            await call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():  # interleaved: noise lands on every side alike
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


async def over_http(
    url: str, seconds: float, connections: int = 16
) -> list[tuple[Case, float, float]]:
    port = 18000 + os.getpid() % 1000
    env = {"GRIDHUB_DATABASE_URL": url, "GRIDHUB_JWT_SECRET": SECRET}
    server = start_server("plain_app:factory", port, env)
    settings = bench_settings(Settings(jwt_secret=SECRET))
    results = []
    try:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
            for case in CASES:
                headers = headers_for(settings, case)

                def graphql(headers: dict[str, str] = headers, case: Case = case) -> Any:
                    return client.post("/graphql", json={"query": case.query}, headers=headers)

                def plain(case: Case = case) -> Any:
                    return client.get(case.plain)

                await rate(graphql, seconds / 2, connections)  # warm-up both
                await rate(plain, seconds / 2, connections)
                graphql_rates, plain_rates = [], []
                for _ in range(3):
                    graphql_rates.append(await rate(graphql, seconds, connections))
                    plain_rates.append(await rate(plain, seconds, connections))
                results.append(
                    (case, statistics.median(graphql_rates), statistics.median(plain_rates))
                )
    finally:
        server.terminate()
        server.wait()
    return results


# --- how much compiles ----------------------------------------------------------------------


def operations_of(path: Path) -> list[tuple[str | None, str, str]]:
    """(role, operation name, document) of each query in a file; the role from `# role:`."""
    text = path.read_text(encoding="utf-8")
    role = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# role:")),
        None,
    )
    found = []
    for definition in parse(text).definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name is not None:
            found.append((role, definition.name.value, text))
    return found


SAMPLES = {
    "Boolean": True,
    "Int": 1,
    "String": "C01",
    "ID": "RXZlbnQ6MQ",
    "DateTime": "2026-01-01T00:00:00+00:00",
}


def sample_value(type_node: Any) -> Any:
    """A value of a required variable's type (the plan depends only on Boolean ones)."""
    if type_node.kind == "non_null_type":
        return sample_value(type_node.type)
    if type_node.kind == "list_type":
        return []
    return SAMPLES.get(type_node.name.value, {})


def fallback_report(settings: Settings) -> None:
    """Compile every query of the demo clients' examples and the pages' persisted operations
    in the role that sends it, as the compiler would for its first request."""
    from graphql.execution.values import VariableValues, get_variable_values
    from graphql.utilities import get_operation_ast

    from hub.api.registry import SchemaRegistry
    from hub.api.schema import build_schema

    registry = SchemaRegistry(build_schema(settings.limits), settings)
    page_roles = {"Board": "dispatcher", "Audit": "auditor"}
    groups = {
        "demo clients' queries (schema/examples)": sorted(
            (ROOT / "schema/examples").glob("*.graphql")
        ),
        "pages' persisted operations (hub/web/operations)": sorted(
            (ROOT / "hub/web/operations").glob("*.graphql")
        ),
    }
    for title, paths in groups.items():
        outcomes: Counter[str] = Counter()
        for path in paths:
            for role, name, text in operations_of(path):
                role = role or next(
                    (r for p, r in page_roles.items() if name.startswith(p)), "public"
                )
                schema = registry.schema_for(role)._schema
                document = parse(text)
                operation = get_operation_ast(document, name)
                assert operation is not None
                given = {
                    d.variable.name.value: sample_value(d.type)
                    for d in operation.variable_definitions or ()
                }
                variables = get_variable_values(schema, operation.variable_definitions or (), given)
                if isinstance(variables, list):  # a mutation's input: refused before it matters
                    variables = VariableValues({}, {})
                try:
                    plan = compile_plan(
                        schema,
                        operation,
                        fragments_of(document.definitions),
                        variables,  # type: ignore[arg-type]
                        registry.profile_for(role),
                    )
                    outcomes["compiled"] += 1
                    for _, root in plan.roots:
                        if isinstance(root, Delegated):
                            outcomes[f"compiled, one root field delegated: {root.reason}"] += 1
                except NotCompilable as refused:
                    outcomes[f"normal executor: {refused.reason}"] += 1
        total = sum(n for outcome, n in outcomes.items() if not outcome.startswith("compiled,"))
        writes = outcomes["normal executor: mutation"] + outcomes["normal executor: subscription"]
        print(
            f"\n{title}: {outcomes['compiled']} of {total} operations compile "
            f"({outcomes['compiled']} of {total - writes} queries)"
        )
        for outcome, count in outcomes.most_common():
            if outcome != "compiled":
                print(f"  {count:>3}  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000", help="comma-separated resident counts")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--rounds", type=int, default=100, help="in-process requests per side")
    parser.add_argument("--seconds", type=float, default=2.0, help="HTTP load per measurement")
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            url = asyncio.run(prepare(args.db, size, Path(tmp)))
            print(f"\n{size} residents, {url.split('://')[0]}; in-process medians (ms) and ratios:")
            print(
                f"{'page':36} {'log':>4} {'compiled':>9} {'normal':>8} {'plain':>7}"
                f" {'compiled/plain':>15} {'normal/plain':>13}  target"
            )
            for case, times in asyncio.run(in_process(url, args.rounds)):
                c, n, p = times["compiled"] * 1000, times["normal"] * 1000, times["plain"] * 1000
                print(
                    f"{case.name:36} {'yes' if case.audited else 'no':>4} {c:9.2f} {n:8.2f}"
                    f" {p:7.2f} {c / p:14.2f}x {n / p:12.2f}x  {case.target}"
                )
            if not args.no_http:
                print("\nover HTTP (1 worker, 16 connections), requests per second:")
                print(f"{'page':36} {'compiled':>9} {'plain':>7} {'plain/compiled':>15}")
                for case, graphql, plain in asyncio.run(over_http(url, args.seconds)):
                    print(f"{case.name:36} {graphql:9.0f} {plain:7.0f} {plain / graphql:14.2f}x")
    fallback_report(bench_settings(Settings()))


if __name__ == "__main__":
    main()
