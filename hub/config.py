"""Settings: one typed object, built once at the edge (CLI or app factory) and passed down.

Nothing here reads the environment at import time, so tests build Settings directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_SQLITE_FILE = "gridhub.db"
# The repository's policies/ folder (model.conf, policy.csv, expectations.csv).
DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
# The repository's connectors/ folder: one definition per external departmental system.
DEFAULT_CONNECTORS_DIR = Path(__file__).resolve().parent.parent / "connectors"


@dataclass(frozen=True, slots=True)
class RateRule:
    """At most `limit` calls per `window_seconds` (a sliding window), per client."""

    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a rate limit needs at least one call per window")
        if self.window_seconds < 1:
            raise ValueError("a rate limit's window must be at least one second")

    @classmethod
    def parse(cls, text: str) -> RateRule:
        """Read "5/600": five calls per 600 seconds (the window defaults to 600)."""
        count, _, window = text.partition("/")
        return cls(limit=int(count), window_seconds=float(window or 600))


def default_database_url(workdir: Path | None = None) -> str:
    path = (workdir or Path.cwd()) / DEFAULT_SQLITE_FILE
    return f"sqlite+aiosqlite:///{path}"


@dataclass(frozen=True, slots=True)
class Limits:
    """Abuse limits for the GraphQL endpoint. Each one fails with its own stable error code."""

    max_body_bytes: int = 256 * 1024
    max_query_chars: int = 20_000
    max_tokens: int = 2_000
    max_depth: int = 10
    max_aliases: int = 30
    max_page_size: int = 100
    # How many items the cost estimate assumes for a list that takes no first/last (a grid's
    # members, an event's timeline, introspection's types and fields).
    list_size_estimate: int = 10
    max_cost: int = 20_000
    # The cost of one aggregate: a connection's totalCount and every field of `stats`. Each one
    # reads every matching row, however small its answer, so a handful fill the budget:
    # max_cost / aggregate_cost of them fit in one operation.
    aggregate_cost: int = 1_000
    max_batch_operations: int = 10
    max_batch_cost: int = 40_000
    execution_timeout_seconds: float = 10.0
    # Database sessions one HTTP request (all the operations of a batch) or one WebSocket
    # connection holds at once; more wait. Aliased heavy fields then queue inside their own
    # request instead of taking the whole connection pool from everybody else.
    max_sessions_per_request: int = 4
    # Operations in flight on one WebSocket connection: subscriptions, and queries and
    # mutations while they run. One more is refused with TOO_MANY_SUBSCRIPTIONS.
    max_subscriptions_per_connection: int = 20

    @property
    def statement_timeout_seconds(self) -> float:
        """PostgreSQL's statement_timeout for API sessions: a little over the execution timeout,
        so a statement that nobody waits for any more also stops on the server."""
        return self.execution_timeout_seconds + 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    # Where event changes are broadcast between workers: "memory" (one process), "postgres"
    # (LISTEN/NOTIFY on the database itself) or a redis:// URL. None picks by database.
    broker_url: str | None = None
    limits: Limits = field(default_factory=Limits)
    # Log SQL statements (very noisy); for debugging only.
    echo_sql: bool = False
    # Where GridHub keeps files of its own (the development signing secret).
    data_dir: Path = field(default_factory=lambda: Path.cwd() / ".gridhub")
    # Tokens: an HS256 secret, and/or a JWKS file of RS256/ES256 public keys. Without a
    # configured secret, `gridhub token` generates one into data_dir (development only).
    jwt_secret: str | None = None
    jwks_file: Path | None = None
    jwt_issuer: str = "gridhub"
    jwt_audience: str = "gridhub-api"
    # The policy the hub seeds its first policy version from (hub.authz.store).
    policy_dir: Path = field(default_factory=lambda: DEFAULT_POLICY_DIR)
    # How often each worker looks for a new policy version (seconds).
    policy_poll_seconds: float = 2.0
    # Connector definitions (hub.connectors.definition), and whether `gridhub serve` runs their
    # schedules itself (off: a separate `gridhub sync worker` does).
    connectors_dir: Path = field(default_factory=lambda: DEFAULT_CONNECTORS_DIR)
    run_connectors: bool = False
    # The web pages (hub.web). Sessions of the dispatch board and the auditors' console are
    # sealed with this secret (else one generated into data_dir); their cookies are Secure
    # unless turned off for a plain-HTTP intranet host other than localhost.
    session_secret: str | None = None
    # The address the public reaches the hub by (https://hub.example.gov.cn), for absolute
    # links in the Atom feeds; without it they are relative. Never taken from a Host header.
    public_url: str | None = None
    cookie_secure: bool = True
    session_hours: float = 8.0
    # Public statistics suppress every figure counting fewer than this many events.
    public_min_count: int = 5
    # Writes by anonymous visitors (every mutation the public role calls, on every channel:
    # /graphql over HTTP and WebSocket, batches, the pages, the gateway), per mutation and
    # client, counted across every worker and host (hub.authz.ratelimit, hub.api.ratelimit).
    # submitFeedback's rule (GRIDHUB_FEEDBACK_RATE):
    feedback_per_window: int = 5
    feedback_window_seconds: float = 600.0
    # Every other mutation the policy lets the public role call (GRIDHUB_PUBLIC_WRITE_RATE).
    public_write_rate: RateRule = field(default_factory=lambda: RateRule(5, 600.0))
    # Where the counts live: Redis when a URL is configured here (or the broker is Redis),
    # else the database.
    redis_url: str | None = None
    # Peers (uvicorn's --forwarded-allow-ips syntax: addresses, networks, "*") whose
    # X-Forwarded-For / X-Forwarded-Proto name the client. None: the peer address is the
    # client, and nobody can choose the address the limits count by sending a header.
    forwarded_allow_ips: str | None = None
    # Compiled execution (hub.api.compiled): list queries answered from a plan per query shape
    # instead of graphql-core's executor. Off: every operation runs on the normal executor.
    compiled_execution: bool = True
    # Plans kept per worker (least recently used first out).
    compiled_plans: int = 512

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if url := env.get("GRIDHUB_DATABASE_URL"):
            values["database_url"] = url
        if broker := env.get("GRIDHUB_BROKER_URL"):
            values["broker_url"] = broker
        if env.get("GRIDHUB_ECHO_SQL") == "1":
            values["echo_sql"] = True
        if data_dir := env.get("GRIDHUB_DATA_DIR"):
            values["data_dir"] = Path(data_dir)
        if secret := env.get("GRIDHUB_JWT_SECRET"):
            values["jwt_secret"] = secret
        if jwks := env.get("GRIDHUB_JWKS_FILE"):
            values["jwks_file"] = Path(jwks)
        if issuer := env.get("GRIDHUB_JWT_ISSUER"):
            values["jwt_issuer"] = issuer
        if audience := env.get("GRIDHUB_JWT_AUDIENCE"):
            values["jwt_audience"] = audience
        if policy_dir := env.get("GRIDHUB_POLICY_DIR"):
            values["policy_dir"] = Path(policy_dir)
        if poll := env.get("GRIDHUB_POLICY_POLL_SECONDS"):
            values["policy_poll_seconds"] = float(poll)
        if connectors_dir := env.get("GRIDHUB_CONNECTORS_DIR"):
            values["connectors_dir"] = Path(connectors_dir)
        if env.get("GRIDHUB_RUN_CONNECTORS") == "1":
            values["run_connectors"] = True
        if session_secret := env.get("GRIDHUB_SESSION_SECRET"):
            values["session_secret"] = session_secret
        if public_url := env.get("GRIDHUB_PUBLIC_URL"):
            values["public_url"] = public_url
        if env.get("GRIDHUB_COOKIE_SECURE") == "0":
            values["cookie_secure"] = False
        if session_hours := env.get("GRIDHUB_SESSION_HOURS"):
            values["session_hours"] = float(session_hours)
        if min_count := env.get("GRIDHUB_PUBLIC_MIN_COUNT"):
            values["public_min_count"] = int(min_count)
        if feedback_rate := env.get("GRIDHUB_FEEDBACK_RATE"):
            # "5/600": five submissions per 600 seconds.
            rule = RateRule.parse(feedback_rate)
            values["feedback_per_window"] = rule.limit
            values["feedback_window_seconds"] = rule.window_seconds
        if public_rate := env.get("GRIDHUB_PUBLIC_WRITE_RATE"):
            values["public_write_rate"] = RateRule.parse(public_rate)
        if redis_url := env.get("GRIDHUB_REDIS_URL"):
            values["redis_url"] = redis_url
        if forwarded := env.get("GRIDHUB_FORWARDED_ALLOW_IPS"):
            values["forwarded_allow_ips"] = forwarded
        if compiled := env.get("GRIDHUB_COMPILED_EXECUTION"):
            values["compiled_execution"] = compiled != "0"
        if plans := env.get("GRIDHUB_COMPILED_PLANS"):
            values["compiled_plans"] = int(plans)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_database(self, url: str) -> Settings:
        return replace(self, database_url=url)

    def write_rule(self, mutation: str) -> RateRule:
        """The rate rule for anonymous calls of `mutation` (a schema field name)."""
        if mutation == "submitFeedback":
            return RateRule(self.feedback_per_window, self.feedback_window_seconds)
        return self.public_write_rate

    @property
    def effective_redis_url(self) -> str | None:
        """The Redis that shared counters live in: `redis_url`, else the broker's when it is a
        Redis (without GridHub's own `channel` parameter, which redis-py would refuse)."""
        if self.redis_url:
            return self.redis_url
        broker = self.broker_url or ""
        if not broker.startswith(("redis://", "rediss://")):
            return None
        parts = urlsplit(broker)
        query = parse_qsl(parts.query, keep_blank_values=True)
        kept = urlencode([(key, value) for key, value in query if key != "channel"])
        return urlunsplit(parts._replace(query=kept))

    @property
    def effective_broker(self) -> str:
        if self.broker_url:
            return self.broker_url
        return "postgres" if self.database_url.startswith("postgresql") else "memory"
