"""What authorisation costs: the 100-resident page as the health role against the same page with
authorisation switched off, in the same process and run. Prints medians and ratios; asserts
nothing.

    python bench/bench_authz.py                 # 10k residents, SQLite
    python bench/bench_authz.py --db postgresql://postgres@127.0.0.1/bench

"Off" is the same app with a policy that opens everything to the public role and classes no
field sensitive: no token to verify, no row scope, no masking, no purpose, no audit record.
"On" is the shipped policy, a signed health token and a stated purpose. Two pages:

- plain fields (no masked or sensitive field): what the policy machinery costs per request
  (authentication, the role's schema, row scopes);
- with masked and sensitive fields: the above plus masking each value and the audit record
  every such read appends (one write transaction per request).

Also printed: Casbin's own enforce() per call, and compiling the default policy into every
role's schema.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import asgi_call, prepare

from hub.api.registry import SchemaRegistry, catalogue_for
from hub.api.roles import POLICY_TYPES
from hub.api.schema import build_schema
from hub.app import create_app
from hub.authz import audit
from hub.authz.identity import issue_token
from hub.authz.policy import EXPECTATIONS_FILE, MODEL_FILE, Policy
from hub.config import DEFAULT_POLICY_DIR, Settings

PLAIN_FIELDS = "id name gender householdCode createdAt updatedAt tags"
MASKED_FIELDS = "id name gender birthDate idNumber phone address householdCode healthNotes tags"


def page(fields: str) -> bytes:
    return orjson.dumps(
        {"query": f"{{ residents(first: 100) {{ edges {{ node {{ {fields} }} }} }} }}"}
    )


def open_policy_dir(directory: Path) -> Path:
    """A policy in which the public role reads, scopes and calls everything; nothing sensitive."""
    shutil.copy(DEFAULT_POLICY_DIR / MODEL_FILE, directory / MODEL_FILE)
    (directory / EXPECTATIONS_FILE).write_text("", encoding="utf-8")
    catalogue = catalogue_for(build_schema())
    lines = [f"p, public, {name}.*, read, allow" for name in catalogue.types]
    lines += [f"p, public, {name}, rows:all, allow" for name in catalogue.scoped]
    (directory / "policy.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


async def timed(calls: dict[str, Callable[[], Awaitable[bytes]]], rounds: int) -> dict[str, float]:
    for call in calls.values():  # warm-up, and a check that every side answers
        for _ in range(20):
            body = orjson.loads(await call())
            if "errors" in body:
                raise SystemExit(f"a benchmark request failed: {body['errors'][0]}")
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        # Interleaved, so machine noise lands on every side alike.
        for name, call in calls.items():
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


async def measure(url: str, rounds: int, workdir: Path) -> dict[str, float]:
    on_settings = Settings(
        database_url=url, jwt_secret="bench-secret-" + "x" * 32, data_dir=workdir
    )
    off_settings = replace(on_settings, policy_dir=open_policy_dir(workdir))
    on, off = create_app(on_settings), create_app(off_settings)
    token = issue_token(on_settings, role="health", subject="bench")
    health = [(b"authorization", f"Bearer {token}".encode()), (b"x-gridhub-purpose", b"bench")]
    async with on.router.lifespan_context(on), off.router.lifespan_context(off):
        # Both registries read the same policy table (the shipped policy, seeded by "on"):
        # "off" installs its open policy under the same version number, so its poller sees
        # nothing new and leaves it in place.
        off_registry = off.state.registry
        text = off_registry.file_policy_text()
        off_registry.install(off_registry.compile(text, version=on.state.registry.version))

        def call(
            app: object, body: bytes, headers: list[tuple[bytes, bytes]]
        ) -> Callable[[], Awaitable[bytes]]:
            return lambda: asgi_call(app, "POST", "/graphql", body=body, headers=headers)

        database = on.state.db
        entry = audit.AuditEntry(
            kind="read", actor="bench", role="health", outcome="ok", fields=["Resident.phone"]
        )

        async def append() -> bytes:
            await audit.append_now(database, entry)
            return b"{}"

        return await timed(
            {
                "plain off": call(off, page(PLAIN_FIELDS), []),
                "plain on": call(on, page(PLAIN_FIELDS), health),
                "masked off": call(off, page(MASKED_FIELDS), []),
                "masked on": call(on, page(MASKED_FIELDS), health),
                "audit append": append,
            },
            rounds,
        )


def casbin_enforce_cost() -> float:
    policy = Policy.from_directory(DEFAULT_POLICY_DIR)
    enforcer = policy.enforcer()
    objects = [f"{t}.name" for t in POLICY_TYPES] * 20
    start = time.perf_counter()
    for obj in objects:
        enforcer.enforce("health", obj, "read")
    return (time.perf_counter() - start) / len(objects)


def compile_cost() -> tuple[float, int]:
    registry = SchemaRegistry(build_schema(), Settings())
    text = registry.file_policy_text()
    start = time.perf_counter()
    for version in range(1, 6):  # new versions: the compile cache does not apply
        compiled = registry.compile(text, version=version)
    return (time.perf_counter() - start) / 5, len(compiled.schemas)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--rounds", type=int, default=300, help="requests per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = asyncio.run(prepare(args.db, args.residents, Path(tmp)))
        medians = asyncio.run(measure(url, args.rounds, Path(tmp)))
    for kind in ("plain", "masked"):
        off, on = medians[f"{kind} off"], medians[f"{kind} on"]
        print(
            f"{kind:>6} page (100 residents): authz off {off * 1000:.2f} ms, "
            f"health {on * 1000:.2f} ms, overhead {(on / off - 1) * 100:+.1f}%"
        )
    print(
        f"one audit record on its own (its own transaction): {medians['audit append'] * 1000:.2f} ms"
    )
    per_call = casbin_enforce_cost()
    seconds, roles = compile_cost()
    print(f"Casbin enforce(): {per_call * 1e6:.0f} µs per call (default policy)")
    print(f"compiling the default policy into {roles} role schemas: {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
