"""The live policy of one worker: compiled profiles and one GraphQL schema per role.

Every worker keeps its own copy and looks for a newer policy version in the database every
`Settings.policy_poll_seconds` (and at once after a change it made itself), so a change made
through any worker applies in all of them within seconds. Open emergency grants are read on the
same beat. A request picks its role's schema here; compiling happens only when the policy
changes (about 3 ms per role).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from strawberry import Schema

from hub.api.roles import catalogue_of, role_schema
from hub.authz import expectations, grants, store
from hub.authz.access import Access
from hub.authz.policy import (
    EXPECTATIONS_FILE,
    MODEL_FILE,
    POLICY_FILE,
    Policy,
    PolicyError,
    read_policy_file,
)
from hub.authz.profile import Catalogue, Profile, compile_profiles
from hub.authz.viewer import Viewer
from hub.config import Settings
from hub.db import Database, utcnow
from hub.errors import Conflict, PolicyRejected, Unauthenticated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Compiled:
    """A policy that passed every check, ready to install."""

    policy: Policy
    version: int
    profiles: dict[str, Profile]
    schemas: dict[str, Schema]


class SchemaRegistry:
    def __init__(self, full: Schema, settings: Settings) -> None:
        self.full = full
        self.settings = settings
        self.catalogue: Catalogue = catalogue_for(full)
        self.model_text = read_policy_file(settings.policy_dir / MODEL_FILE)
        self._compiled = self.compile(self.file_policy_text(), version=0)
        self._grants: tuple[grants.ActiveGrant, ...] = ()
        self._poller: asyncio.Task[None] | None = None

    # --- compiling -----------------------------------------------------------------------

    def file_policy_text(self) -> str:
        return read_policy_file(self.settings.policy_dir / POLICY_FILE)

    def compile(self, text: str, *, version: int) -> Compiled:
        """Parse, check against the schema and the auditors' expectations, and build every
        role's schema. Raises PolicyRejected with the reason; installs nothing."""
        expected = read_policy_file(self.settings.policy_dir / EXPECTATIONS_FILE)
        return _compile(self.full, self.model_text, text, expected, version)

    def install(self, compiled: Compiled) -> None:
        self._compiled = compiled
        log.info("policy version %s installed (%s roles)", compiled.version, len(compiled.schemas))

    # --- reading -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._compiled.version

    @property
    def policy(self) -> Policy:
        return self._compiled.policy

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._compiled.schemas)

    @property
    def grants(self) -> tuple[grants.ActiveGrant, ...]:
        """The open emergency grants, as of the last sync."""
        return self._grants

    def schema_for(self, role: str) -> Schema:
        try:
            return self._compiled.schemas[role]
        except KeyError:
            raise Unauthenticated(f"role {role!r} is not in the policy") from None

    def profile_for(self, role: str) -> Profile:
        try:
            return self._compiled.profiles[role]
        except KeyError:
            raise Unauthenticated(f"role {role!r} is not in the policy") from None

    def access_for(self, viewer: Viewer, *, now: datetime | None = None) -> Access:
        """The viewer's Access under the live policy. Its emergency grants are the ones it
        opened as this very role: a grant never follows a subject into its other roles."""
        return Access(
            viewer, self.profile_for(viewer.role), emergency_paths=self.grant_paths(viewer, now=now)
        )

    def grant_paths(self, viewer: Viewer, *, now: datetime | None = None) -> tuple[str, ...]:
        moment = now or utcnow()
        return tuple(
            g.grid_path
            for g in self._grants
            if g.subject == viewer.subject and g.role == viewer.role and g.expires_at > moment
        )

    # --- keeping up with the database ----------------------------------------------------

    async def sync(self, db: Database) -> bool:
        """Install the database's latest policy version if it is newer; refresh the grants.
        Seeds version 1 from policy.csv on a database without a policy."""
        async with db.reader() as session:
            latest = await store.latest_version(session)
            active = await grants.active_grants(session)
        self._grants = tuple(active)
        if latest == 0:
            # Several workers starting on an empty database race to seed version 1: the one
            # that loses gets CONFLICT and reads the winner's.
            with contextlib.suppress(Conflict):
                async with db.transaction() as session:
                    await store.seed(session, text=self.file_policy_text())
            return await self.sync(db)
        if latest == self.version:
            return False
        async with db.reader() as session:
            stored = await store.get(session, version=latest)
        try:
            self.install(self.compile(stored.text, version=latest))
        except PolicyRejected:
            # Only checked versions are stored; one that fails here (a code change removed a
            # field it names) keeps the last good policy running rather than opening anything.
            log.exception("policy version %s does not compile; keeping %s", latest, self.version)
            return False
        return True

    async def start(self, db: Database) -> None:
        await self.sync(db)
        self._poller = asyncio.create_task(self._poll(db), name="policy-poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self, db: Database) -> None:
        while True:
            await asyncio.sleep(self.settings.policy_poll_seconds)
            try:
                await self.sync(db)
            except Exception:  # the next beat tries again; a worker must not stop polling
                log.exception("policy poll failed")


@lru_cache(maxsize=16)
def _compile(
    full: Schema,
    model_text: str,
    text: str,
    expected: str,
    version: int,
) -> Compiled:
    # Cached: every app in a process (tests start hundreds) compiles the same policy once.
    try:
        policy = Policy.parse(model_text, text)
        profiles = compile_profiles(policy, catalogue_for(full), version=version)
        failures = expectations.check(policy, expectations.parse(expected))
        if failures:
            raise PolicyError(
                "breaks the auditors' expectations: "
                + "; ".join(f.describe() for f in failures[:5])
            )
        schemas = {role: role_schema(full, p) for role, p in profiles.items()}
    except (PolicyError, ValueError) as exc:
        raise PolicyRejected(str(exc)) from exc
    return Compiled(policy, version, profiles, schemas)


@lru_cache(maxsize=8)
def catalogue_for(full: Schema) -> Catalogue:
    return catalogue_of(full._schema)
