"""Connector definitions: one TOML file per external system in connectors/.

A definition says what the system is, which kind of connector talks to it, which way data flows,
which GridHub entity it feeds, how external fields map to GridHub fields, when it runs and which
policy subject it acts as. Secrets never appear in it: `[auth] secret_env` and `${NAME}` name
environment variables, read when a run starts.

A broken definition is refused at load with the file, the line and the reason: an operator reads
`DefinitionError` and knows what to fix without reading code.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("file", "rest", "open311", "webhook")
DIRECTIONS = ("pull", "push")
# Which directions each kind supports: a file can be imported or exported, a webhook only
# pushes, the HTTP pulls only pull.
KIND_DIRECTIONS = {
    "file": ("pull", "push"),
    "rest": ("pull",),
    "open311": ("pull",),
    "webhook": ("push",),
}

# The GridHub fields a mapping may write, per entity: GraphQL input field names, because the
# policy speaks of them (`p, connector:health, ResidentInput.healthNotes, set, allow`).
ENTITY_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "resident": (
        "ResidentInput",
        (
            "name",
            "idNumber",
            "phone",
            "address",
            "householdCode",
            "gridCode",
            "tags",
            "healthNotes",
        ),
    ),
    "event": (
        "ReportEventInput",
        ("category", "title", "gridCode", "severity", "description", "deadline", "reporterSystem"),
    ),
}
# Event fields a source reports that only go into the event's timeline (as a note: the policy's
# `call` on Mutation.addEventNote governs them), never into the event itself.
TIMELINE_FIELDS = {"resident": (), "event": ("status", "statusNotes")}
# Fields that identify a record when no link exists yet.
NATURAL_KEYS = {"resident": ("idNumber",), "event": ()}
# Fields whose source column must not double as an external id.
PERSONAL_FIELDS = frozenset({"name", "idNumber", "phone", "address", "healthNotes"})
# Fields that are lists (the source's text is split).
LIST_FIELDS = frozenset({"tags"})

TRANSFORMS = ("strip", "upper", "lower", "digits", "split", "date", "none")
SECRET_WORDS = ("secret", "token", "password", "passwd", "api_key", "apikey")

_SCHEDULE = re.compile(r"^(manual|every\s+(\d+)\s*([smh]))$")
_SUBJECT = re.compile(r"^connector:[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


class DefinitionError(ValueError):
    """A definition that cannot be used, with where and why."""

    def __init__(self, path: Path, reason: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FieldMap:
    """How one GridHub field is filled from a source record."""

    target: str  # GridHub input field, e.g. "healthNotes"
    source: str | None  # the source record's field; None for a constant
    transform: str = "strip"
    separator: str = ";"  # for split
    date_format: str | None = None  # for date: strptime format of the source
    values: Mapping[str, str] = field(default_factory=dict)  # value map, applied after transform
    default: str | None = None  # when the source field is missing or empty
    constant: str | None = None
    required: bool = False


@dataclass(frozen=True, slots=True)
class Auth:
    header: str
    scheme: str | None
    secret_env: str

    def headers(self) -> dict[str, str]:
        secret = os.environ.get(self.secret_env)
        if not secret:
            raise DefinitionError(
                Path(self.secret_env), f"the environment variable {self.secret_env} is not set"
            )
        return {self.header: f"{self.scheme} {secret}" if self.scheme else secret}


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    path: Path
    title: str
    kind: str
    direction: str
    entity: str
    subject: str
    # The department the connector speaks for, for row scopes like own_department (webhooks).
    department: str | None
    system: str
    schedule_seconds: int | None  # None: manual only
    source: Mapping[str, Any]
    auth: Auth | None
    external_id: str | None
    natural_key: tuple[str, ...]
    version_field: str | None
    mapping: tuple[FieldMap, ...]
    # Natural-key fields read only to match by (`natural_key = { idNumber = "id_number" }`).
    key_maps: tuple[FieldMap, ...] = ()
    page_size: int = 500

    @property
    def input_type(self) -> str:
        return ENTITY_INPUTS[self.entity][0]

    def input_objects(self) -> list[str]:
        """The policy objects the mapping writes: ["ResidentInput.healthNotes", ...]."""
        timeline = TIMELINE_FIELDS[self.entity]
        return [f"{self.input_type}.{m.target}" for m in self.mapping if m.target not in timeline]

    def resolved_source(self) -> dict[str, Any]:
        """The [source] table with `${NAME}` replaced from the environment (at run time)."""
        return {key: _resolve(self.path, key, value) for key, value in self.source.items()}


def _resolve(path: Path, key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise DefinitionError(path, f"[source] {key} needs the environment variable {name}")
        return os.environ[name]

    return _ENV_REF.sub(substitute, value)


# --- loading -----------------------------------------------------------------------------------


def load_directory(directory: Path) -> dict[str, Definition]:
    """Every `*.toml` in `directory`, by name. The first broken one raises DefinitionError."""
    definitions: dict[str, Definition] = {}
    for path in sorted(directory.glob("*.toml")):
        definition = load_file(path)
        definitions[definition.name] = definition
    return definitions


def load_file(path: Path) -> Definition:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DefinitionError(path, "not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = _toml_error_line(str(error))
        raise DefinitionError(path, f"not valid TOML: {error}", line=line) from None
    return _Checker(path, text, data).definition()


def _toml_error_line(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


class _Checker:
    """Reads one parsed file into a Definition, refusing with the line of the offending key."""

    TOP_KEYS = frozenset(
        {
            "name",
            "title",
            "kind",
            "direction",
            "entity",
            "subject",
            "department",
            "system",
            "schedule",
            "page_size",
            "source",
            "auth",
            "match",
            "mapping",
        }
    )

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.data = data

    def fail(self, reason: str, *, section: str | None = None, key: str | None = None) -> None:
        raise DefinitionError(self.path, reason, line=self.line_of(section, key))

    def line_of(self, section: str | None, key: str | None) -> int | None:
        """The line that sets `key` in `[section]` (top level when None), or the section's
        header when `key` is None."""
        current: str | None = None
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            header = re.match(r"^\[([^\]]+)\]", line)
            if header:
                current = header.group(1).strip()
                if key is None and current == section:
                    return number
                continue
            if key is not None and current == section:
                name = line.split("=", 1)[0].strip().strip('"').strip("'")
                if "=" in line and name == key:
                    return number
        return None

    def text(self, key: str, *, required: bool = True, default: str | None = None) -> str | None:
        value = self.data.get(key, default)
        if value is None:
            if required:
                self.fail(f"`{key}` is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"`{key}` must be a non-empty string", key=key)
        return str(value).strip()

    def one_of(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in choices:
            self.fail(f"`{key}` must be one of {', '.join(choices)} (got {value!r})", key=key)
        return str(value)

    def definition(self) -> Definition:
        for key in self.data:
            if key not in self.TOP_KEYS:
                self.fail(f"unknown key `{key}`", key=key, section=None)
        name = self.text("name", default=self.path.stem)
        assert name is not None
        if not _NAME.match(name):
            self.fail("`name` must be lower case letters, digits, - or _", key="name")
        if name != self.path.stem:
            self.fail(f"`name` ({name}) must match the file name ({self.path.stem})", key="name")
        kind = self.one_of("kind", KINDS)
        direction = self.one_of("direction", DIRECTIONS)
        if direction not in KIND_DIRECTIONS[kind]:
            self.fail(f"a {kind} connector cannot {direction}", key="direction")
        entity = self.one_of("entity", tuple(ENTITY_INPUTS))
        subject = self.text("subject")
        assert subject is not None
        if not _SUBJECT.match(subject):
            self.fail("`subject` must look like connector:<name>", key="subject")
        page_size = self.data.get("page_size", 500)
        if not isinstance(page_size, int) or not 1 <= page_size <= 10_000:
            self.fail("`page_size` must be a whole number from 1 to 10000", key="page_size")
        source = self.table("source")
        self.refuse_secrets(source, "source")
        self.check_source(kind, source)
        match = self.table("match")
        mapping = self.field_maps(entity)
        self.mapped = mapping
        self.key_maps: tuple[FieldMap, ...] = ()
        external_id, natural_key, version_field = self.matching(match, entity, kind, direction)
        system = self.text("system", required=False) or name
        if len(system) > 32:
            self.fail("`system` must be at most 32 characters", key="system")
        return Definition(
            name=name,
            path=self.path,
            title=self.text("title", required=False) or name,
            kind=kind,
            direction=direction,
            entity=entity,
            subject=subject,
            department=self.text("department", required=False),
            system=system,
            schedule_seconds=self.schedule(),
            source=source,
            auth=self.auth(),
            external_id=external_id,
            natural_key=natural_key,
            version_field=version_field,
            mapping=mapping,
            key_maps=self.key_maps,
            page_size=page_size,
        )

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.fail(f"`{key}` must be a table ([{key}])", key=key)
        return dict(value)

    def check_source(self, kind: str, source: dict[str, Any]) -> None:
        from hub.connectors import kinds  # the kinds import their HTTP and file libraries

        for key, problem in kinds.check_options(kind, source):
            self.fail(f"[source] {key}: {problem}", section="source", key=key)

    def refuse_secrets(self, table: Mapping[str, Any], section: str) -> None:
        for key, value in table.items():
            lowered = key.lower()
            if not any(word in lowered for word in SECRET_WORDS) or lowered.endswith("_env"):
                continue
            if isinstance(value, str) and _ENV_REF.fullmatch(value.strip()):
                continue
            self.fail(
                f"`{key}` looks like a secret: secrets come from the environment "
                f'(write "${{NAME}}" or use [auth] secret_env)',
                section=section,
                key=key,
            )

    def schedule(self) -> int | None:
        value = self.text("schedule", required=False, default="manual")
        found = _SCHEDULE.match(value or "")
        if not found:
            self.fail('`schedule` must be "manual" or "every N s|m|h"', key="schedule")
            return None
        assert found is not None
        if found.group(1) == "manual":
            return None
        seconds = int(found.group(2)) * {"s": 1, "m": 60, "h": 3600}[found.group(3)]
        if seconds < 10:
            self.fail("`schedule` must be at least every 10 s", key="schedule")
        return seconds

    def auth(self) -> Auth | None:
        table = self.table("auth")
        if not table:
            return None
        unknown = set(table) - {"header", "scheme", "secret_env"}
        for key in sorted(unknown):
            self.fail(f"unknown key `{key}` in [auth]", section="auth", key=key)
        secret_env = table.get("secret_env")
        if not isinstance(secret_env, str) or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", secret_env):
            self.fail(
                "[auth] needs `secret_env`, the name of an environment variable (A-Z, 0-9, _)",
                section="auth",
                key="secret_env" if "secret_env" in table else None,
            )
        header = table.get("header", "Authorization")
        scheme = table.get("scheme")
        if not isinstance(header, str) or not re.fullmatch(r"[A-Za-z0-9-]+", header):
            self.fail("[auth] `header` must be an HTTP header name", section="auth", key="header")
        if scheme is not None and not isinstance(scheme, str):
            self.fail("[auth] `scheme` must be a string", section="auth", key="scheme")
        return Auth(header=header, scheme=scheme, secret_env=str(secret_env))

    def matching(
        self, match: dict[str, Any], entity: str, kind: str, direction: str
    ) -> tuple[str | None, tuple[str, ...], str | None]:
        for key in match:
            if key not in ("external_id", "natural_key", "version"):
                self.fail(f"unknown key `{key}` in [match]", section="match", key=key)
        external_id = match.get("external_id")
        if external_id is not None and not isinstance(external_id, str):
            self.fail("[match] `external_id` must be a source field name", section="match")
        natural = match.get("natural_key", [])
        if isinstance(natural, str):
            natural = [natural]
        if isinstance(natural, dict):
            # {idNumber = "id_number"}: read from the source to match by, never written (the
            # connector may not own the field it matches by).
            self.key_maps = tuple(self.field_map(k, v, section="match") for k, v in natural.items())
            natural = list(natural)
        elif not isinstance(natural, list) or not all(isinstance(n, str) for n in natural):
            self.fail(
                "[match] `natural_key` must be a list of mapped GridHub fields, or a table "
                "of GridHub field = source field",
                section="match",
            )
        else:
            mapped = {m.target for m in self.mapped}
            for name in natural:
                if name not in mapped:
                    self.fail(
                        f"[match] `natural_key` {name!r} is not in [mapping]: map it, or write "
                        f'natural_key = {{ {name} = "<source field>" }}',
                        section="match",
                        key="natural_key",
                    )
        for name in natural:
            if name not in NATURAL_KEYS[entity]:
                self.fail(
                    f"[match] `natural_key` {name!r} cannot identify a {entity} "
                    f"(possible: {', '.join(NATURAL_KEYS[entity]) or 'none'})",
                    section="match",
                    key="natural_key",
                )
        version = match.get("version")
        if version is not None and not isinstance(version, str):
            self.fail("[match] `version` must be a source field name", section="match")
        needs_identity = direction == "pull" and kind != "webhook"
        if needs_identity and external_id is None and not natural:
            self.fail(
                "[match] needs `external_id` or `natural_key`: without one a second run "
                "would create every record again",
                section="match",
            )
        personal = {m.source for m in self.mapped if m.target in PERSONAL_FIELDS}
        personal |= {m.source for m in self.key_maps}
        if external_id is not None and external_id in personal:
            # External ids are shown where personal data is not (conflicts, the quarantine's
            # list): an ID number or a phone must not become one.
            self.fail(
                f"[match] `external_id` {external_id!r} is personal data (it is mapped to a "
                "personal field): use the system's own record number",
                section="match",
                key="external_id",
            )
        return external_id, tuple(natural), version

    def field_maps(self, entity: str) -> tuple[FieldMap, ...]:
        table = self.table("mapping")
        allowed = ENTITY_INPUTS[entity][1] + TIMELINE_FIELDS[entity]
        maps: list[FieldMap] = []
        for target, spec in table.items():
            if target not in allowed:
                self.fail(
                    f"[mapping] `{target}` is not a {entity} field "
                    f"(possible: {', '.join(allowed)})",
                    section="mapping",
                    key=target,
                )
            maps.append(self.field_map(target, spec))
        return tuple(maps)

    def field_map(self, target: str, spec: Any, *, section: str = "mapping") -> FieldMap:
        where = {"section": section, "key": target}
        default_transform = "split" if target in LIST_FIELDS else "strip"
        if isinstance(spec, str):
            return FieldMap(target=target, source=spec, transform=default_transform)
        if not isinstance(spec, dict):
            self.fail(f"[mapping] `{target}` must be a field name or a table", **where)
        known = {"from", "transform", "separator", "format", "map", "default", "value", "required"}
        for key in spec:
            if key not in known:
                self.fail(
                    f"[mapping] `{target}` has unknown option `{key}` "
                    f"(possible: {', '.join(sorted(known))})",
                    **where,
                )
        source, constant = spec.get("from"), spec.get("value")
        if (source is None) == (constant is None):
            self.fail(f"[mapping] `{target}` needs exactly one of `from` or `value`", **where)
        transform = spec.get("transform", default_transform)
        if transform not in TRANSFORMS:
            self.fail(
                f"[mapping] `{target}` transform must be one of {', '.join(TRANSFORMS)}", **where
            )
        if (transform == "split") != (target in LIST_FIELDS):
            self.fail(
                f"[mapping] `{target}`: only list fields ({', '.join(LIST_FIELDS)}) split", **where
            )
        if transform == "date" and not isinstance(spec.get("format"), str):
            self.fail(f"[mapping] `{target}` transform date needs `format`", **where)
        values = spec.get("map", {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            self.fail(f"[mapping] `{target}` map must be a table of strings", **where)
        default = spec.get("default")
        if default is not None and not isinstance(default, str):
            self.fail(f"[mapping] `{target}` default must be a string", **where)
        return FieldMap(
            target=target,
            source=source,
            transform=transform,
            separator=str(spec.get("separator", ";")),
            date_format=spec.get("format"),
            values={str(k): v for k, v in values.items()},
            default=default,
            constant=None if constant is None else str(constant),
            required=bool(spec.get("required", False)),
        )
