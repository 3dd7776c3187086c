"""One GraphQL schema per role, compiled from the role's profile (hub.authz.profile).

The full schema is built once by strawberry; each role's schema is a copy of its graphql-core
schema without what the role may not use: hidden fields, the filters, sort keys, aggregates and
lookup arguments that would reveal them (REQUIRES), mutations it may not call, input fields it
may not set, and every type left with nothing to show (with the fields that point to it).
Masked fields stay, typed String, with a resolver that masks each value; sensitive fields get a
resolver that records what was read for the audit log. Nothing is looked up per field at request
time: a field the role may not see is simply not there, so a query naming it fails validation
exactly like a field that does not exist (suggestions are off).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import date, datetime
from inspect import isawaitable
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    GraphQLUnionType,
    default_field_resolver,
    get_named_type,
    validate_schema,
)
from graphql.pyutils import Undefined
from strawberry import Schema

from hub.api.scope import ATTRIBUTIONS, WRITES_KEY
from hub.authz import masking
from hub.authz.profile import Catalogue, Level, Profile
from hub.authz.scopes import SCOPED_TYPES, supported_scopes

# Where a role's graphql-core schema keeps the profile it was cut for.
PROFILE = "gridhub-profile"

# Output types whose fields the policy governs field by field (Type.field).
POLICY_TYPES = (
    "Grid",
    "Department",
    "Member",
    "Resident",
    "ExternalId",
    "Event",
    "ExternalSystem",
    "EventTransition",
    "Notice",
    "Feedback",
    "Stats",
    "AuditRecord",
    "AuditChainStatus",
    "PolicyVersion",
    "EmergencyGrant",
    "SyncRun",
    "SyncQuarantineItem",
    "SyncConflict",
    "WebhookDelivery",
    "CompiledExecution",
    "FallbackCount",
    "RegistrationAlert",
)
# Input types whose fields the policy governs (`set`).
POLICY_INPUTS = (
    "ResidentInput",
    "ReportEventInput",
    "CreateNoticeInput",
    "SubmitFeedbackInput",
    "ChangePolicyInput",
    "OpenEmergencyGrantInput",
)
OPERATION_ROOTS = ("Mutation", "Subscription")

# What a filter, sort key, aggregate or lookup argument reveals: it is in a role's schema only if
# the role reads every field listed here in full. Keys: `Input.field`, `Enum.VALUE`,
# `Type.field` (output fields of aggregates) and `Type.field(argument)`. Every filter, sort key
# and argument is listed here or in NEEDS_NOTHING (tests/test_policy_table.py holds that).
REQUIRES: Mapping[str, tuple[str, ...]] = {
    "GridFilter.level": ("Grid.level",),
    "GridFilter.inGrid": ("Grid.path",),
    "GridFilter.parentCode": ("Grid.parent",),
    "GridSortField.PATH": ("Grid.path",),
    "GridSortField.CODE": ("Grid.code",),
    "Query.grid(code)": ("Grid.code",),
    "Query.department(code)": ("Department.code",),
    "MemberFilter.inGrid": ("Member.grids",),
    "MemberFilter.departmentCode": ("Member.department",),
    "MemberFilter.isPartyMember": ("Member.isPartyMember",),
    "ResidentFilter.inGrid": ("Resident.grid",),
    "ResidentFilter.tag": ("Resident.tags",),
    "ResidentFilter.gender": ("Resident.gender",),
    "ResidentFilter.bornAfter": ("Resident.birthDate",),
    "ResidentFilter.bornBefore": ("Resident.birthDate",),
    "ResidentFilter.householdCode": ("Resident.householdCode",),
    "ResidentFilter.idNumber": ("Resident.idNumber",),
    "ResidentFilter.pendingRegistration": ("Resident.duplicateOf",),
    "ResidentSortField.NAME": ("Resident.name",),
    "ResidentSortField.BIRTH_DATE": ("Resident.birthDate",),
    "ResidentSortField.UPDATED_AT": ("Resident.updatedAt",),
    "EventFilter.inGrid": ("Event.grid",),
    "EventFilter.status": ("Event.status",),
    "EventFilter.category": ("Event.category",),
    "EventFilter.severity": ("Event.severity",),
    "EventFilter.departmentCode": ("Event.department",),
    "EventFilter.reportedAfter": ("Event.reportedAt",),
    "EventFilter.reportedBefore": ("Event.reportedAt",),
    "EventFilter.overdue": ("Event.overdue",),
    "EventSortField.REPORTED_AT": ("Event.reportedAt",),
    "EventSortField.UPDATED_AT": ("Event.updatedAt",),
    "Query.event(code)": ("Event.code",),
    "EventDimension.CATEGORY": ("Event.category",),
    "EventDimension.STATUS": ("Event.status",),
    "EventDimension.SEVERITY": ("Event.severity",),
    "EventDimension.MONTH": ("Event.reportedAt",),
    "EventDimension.GRID": ("Event.grid",),
    "EventCount.category": ("Event.category",),
    "EventCount.status": ("Event.status",),
    "EventCount.severity": ("Event.severity",),
    "EventCount.month": ("Event.reportedAt",),
    "EventCount.grid": ("Event.grid",),
    "Stats.eventTimes": ("Event.responseSeconds", "Event.resolutionSeconds"),
    "Stats.residentTagCounts": ("Resident.tags", "Resident.grid"),
    # The actor of an event's "report" line is its reporter.
    "EventTransition.actor": ("Event.reporter",),
    "Subscription.eventChanged(inGrid)": ("Event.grid",),
    "Subscription.eventChanged(departmentCode)": ("Event.department",),
    "NoticeFilter.status": ("Notice.status",),
    "NoticeFilter.inGrid": ("Notice.scope",),
    "NoticeFilter.appliesTo": ("Notice.scope",),
    "NoticeFilter.departmentCode": ("Notice.department",),
    "NoticeFilter.search": ("Notice.title", "Notice.body"),
    "NoticeSortField.CREATED_AT": ("Notice.createdAt",),
    "NoticeSortField.PUBLISHED_AT": ("Notice.publishedAt",),
    "FeedbackFilter.status": ("Feedback.status",),
    "FeedbackFilter.kind": ("Feedback.kind",),
    "FeedbackFilter.inGrid": ("Feedback.grid",),
    "Query.feedback(trackingCode)": ("Feedback.trackingCode",),
    "AuditFilter.actor": ("AuditRecord.actor",),
    "AuditFilter.role": ("AuditRecord.role",),
    "AuditFilter.kind": ("AuditRecord.kind",),
    "AuditFilter.record": ("AuditRecord.records",),
    "AuditFilter.field": ("AuditRecord.fields",),
    "AuditFilter.purpose": ("AuditRecord.purpose",),
    "AuditFilter.outcome": ("AuditRecord.outcome",),
    "AuditFilter.since": ("AuditRecord.at",),
    "AuditFilter.until": ("AuditRecord.at",),
    "Query.syncRuns(connector)": ("SyncRun.connector",),
    "Query.syncQuarantine(connector)": ("SyncQuarantineItem.connector",),
    "QuarantineStatus.OPEN": ("SyncQuarantineItem.status",),
    "QuarantineStatus.REPLAYED": ("SyncQuarantineItem.status",),
    "QuarantineStatus.DISCARDED": ("SyncQuarantineItem.status",),
    "Query.syncConflicts(connector)": ("SyncConflict.connector",),
    "Query.webhookDeliveries(subscription)": ("WebhookDelivery.subscription",),
    "Query.webhookDeliveries(status)": ("WebhookDelivery.status",),
}

# Filters, sort keys and arguments that reveal nothing about any row by themselves.
NEEDS_NOTHING = frozenset(
    {
        "ResidentSortField.ID",
        "EventSortField.ID",
        "NoticeSortField.ID",
        "SortDirection.ASC",
        "SortDirection.DESC",
        "CoordinateSystem.WGS84",
        "CoordinateSystem.GCJ02",
        # Lookups and groupings of what the field they belong to already shows or requires.
        "Query.policyVersion(version)",
        "Query.emergencyGrants(active)",
        "Stats.eventCounts(gridLevel)",
        "Stats.eventCounts(utcOffsetMinutes)",
        "Stats.residentTagCounts(level)",
        "Stats.residentTagCounts(tags)",
    }
)


def profile_of(schema: GraphQLSchema) -> Profile | None:
    """The profile a role's schema was cut for (None for the full schema)."""
    found = (schema.extensions or {}).get(PROFILE)
    return found if isinstance(found, Profile) else None


def catalogue_of(schema: GraphQLSchema) -> Catalogue:
    """Every object the policy can name, read off the full schema."""
    types: dict[str, tuple[str, ...]] = {}
    scalars: set[str] = set()
    for name in POLICY_TYPES:
        graphql_type = schema.type_map.get(name)
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        types[name] = tuple(graphql_type.fields)
        for field_name, field in graphql_type.fields.items():
            if isinstance(get_named_type(field.type), GraphQLScalarType):
                scalars.add(f"{name}.{field_name}")
    inputs = {
        name: tuple(schema.type_map[name].fields)  # type: ignore[attr-defined]
        for name in POLICY_INPUTS
        if name in schema.type_map
    }
    operations = tuple(
        f"{root.name}.{field}"
        for root in (schema.mutation_type, schema.subscription_type)
        if root is not None
        for field in root.fields
    )
    scoped = {name: supported_scopes(model) for name, model in SCOPED_TYPES.items()}
    return Catalogue(
        types=types,
        scalars=frozenset(scalars),
        inputs=inputs,
        operations=operations,
        scoped=scoped,
        writes=_written_types(schema),
        attributions=ATTRIBUTIONS,
    )


def _written_types(schema: GraphQLSchema) -> dict[str, str]:
    """Each mutation's declared type (hub.api.scope.writes). A mutation that declares none is a
    programming error: its writes would escape the write scopes."""
    written: dict[str, str] = {}
    mutation = schema.mutation_type
    for name, field in (mutation.fields if mutation else {}).items():
        definition = (field.extensions or {}).get("strawberry-definition")
        type_name = (definition.metadata or {}).get(WRITES_KEY) if definition else None
        if type_name is None:
            raise LookupError(f"Mutation.{name} does not declare the type it writes")
        written[f"Mutation.{name}"] = type_name
    return written


class _Plan:
    """Decides, for one profile, which parts of the full schema the role's schema keeps."""

    def __init__(self, schema: GraphQLSchema, profile: Profile) -> None:
        self.schema = schema
        self.profile = profile
        self.dropped: set[str] = set()
        self.fields: dict[str, list[str]] = {}
        self.input_fields: dict[str, list[str]] = {}
        self.enum_values: dict[str, list[str]] = {}
        self._decide()

    def satisfied(self, key: str) -> bool:
        return all(self.profile.level(need) is Level.FULL for need in REQUIRES.get(key, ()))

    def _decide(self) -> None:
        named = [t for t in self.schema.type_map.values() if not t.name.startswith("__")]
        for t in named:
            if isinstance(t, GraphQLEnumType):
                values = [v for v in t.values if self.satisfied(f"{t.name}.{v}")]
                self.enum_values[t.name] = values
                if not values:
                    self.dropped.add(t.name)
        # Dropping a type can drop fields that point to it, which can drop more types.
        changed = True
        while changed:
            changed = False
            for t in named:
                if t.name in self.dropped:
                    continue
                before = (self.fields.get(t.name), self.input_fields.get(t.name))
                if self._keeps(t) is None:
                    self.dropped.add(t.name)
                    changed = True
                elif before != (self.fields.get(t.name), self.input_fields.get(t.name)):
                    changed = True

    def _keeps(self, t: GraphQLNamedType) -> bool | None:
        """Recompute what `t` keeps; None when `t` must go."""
        if isinstance(t, GraphQLInputObjectType):
            kept = []
            for name, field in t.fields.items():
                usable = self._input_field_allowed(t.name, name) and self._usable(field.type)
                if usable:
                    kept.append(name)
                elif _required(field):
                    return None
            self.input_fields[t.name] = kept
            return True if kept else None
        if isinstance(t, GraphQLObjectType | GraphQLInterfaceType):
            kept = []
            for name, field in t.fields.items():
                verdict = self._field_verdict(t.name, name, field)
                if verdict == "keep":
                    kept.append(name)
                elif verdict == "drop-type":
                    return None
            self.fields[t.name] = kept
            if isinstance(t, GraphQLInterfaceType) and not self.implementations(t):
                return None
            return True if kept else None
        if isinstance(t, GraphQLUnionType):
            return True if any(m.name not in self.dropped for m in t.types) else None
        return True

    def implementations(self, interface: GraphQLInterfaceType) -> list[str]:
        return [
            t.name
            for t in self.schema.get_possible_types(interface)
            if t.name not in self.dropped
            and set(self.fields.get(interface.name, interface.fields))
            <= set(self.fields.get(t.name, t.fields))
        ]

    def _field_verdict(self, type_name: str, name: str, field: GraphQLField) -> str:
        key = f"{type_name}.{name}"
        allowed = self.satisfied(key)
        if type_name in POLICY_TYPES:
            allowed = allowed and self.profile.level(key) is not Level.HIDDEN
        elif type_name in OPERATION_ROOTS:
            allowed = allowed and key in self.profile.operations
        for arg_name, arg in field.args.items():
            if not self.argument_allowed(key, arg_name, arg) and _required(arg):
                allowed = False
        if allowed and self._usable(field.type):
            return "keep"
        # A non-null field that cannot be shown leaves its type unable to exist.
        if isinstance(field.type, GraphQLNonNull) and type_name not in (
            *POLICY_TYPES,
            *OPERATION_ROOTS,
            "Query",
        ):
            return "drop-type"
        return "drop"

    def argument_allowed(self, field_key: str, name: str, arg: GraphQLArgument) -> bool:
        return self.satisfied(f"{field_key}({name})") and self._usable(arg.type)

    def _input_field_allowed(self, type_name: str, name: str) -> bool:
        key = f"{type_name}.{name}"
        if type_name in POLICY_INPUTS and key not in self.profile.inputs:
            return False
        return self.satisfied(key)

    def _usable(self, graphql_type: Any) -> bool:
        return get_named_type(graphql_type).name not in self.dropped


def _required(item: GraphQLArgument | GraphQLInputField) -> bool:
    return isinstance(item.type, GraphQLNonNull) and item.default_value is Undefined


def filter_schema(schema: GraphQLSchema, profile: Profile) -> GraphQLSchema:
    """The role's graphql-core schema: a rebuilt copy of `schema` with only what it keeps."""
    plan = _Plan(schema, profile)
    built: dict[str, GraphQLNamedType] = {}

    def named(t: GraphQLNamedType) -> GraphQLNamedType:
        return built[t.name]

    def wrap(t: Any) -> Any:
        if isinstance(t, GraphQLNonNull):
            return GraphQLNonNull(wrap(t.of_type))
        if isinstance(t, GraphQLList):
            return GraphQLList(wrap(t.of_type))
        return named(t)

    def args_of(key: str, field: GraphQLField) -> dict[str, GraphQLArgument]:
        return {
            name: GraphQLArgument(**_input_kwargs(arg, wrap, plan.enum_values))
            for name, arg in field.args.items()
            if plan.argument_allowed(key, name, arg)
        }

    def output_field(type_name: str, name: str, field: GraphQLField) -> GraphQLField:
        key = f"{type_name}.{name}"
        kwargs = {**field.to_kwargs(), "type_": wrap(field.type), "args": args_of(key, field)}
        kind = profile.masks.get(key)
        if kind is not None:
            nullable = not isinstance(field.type, GraphQLNonNull)
            kwargs["type_"] = GraphQLString if nullable else GraphQLNonNull(GraphQLString)
            kwargs["resolve"] = _masking(field.resolve, key, kind)
        elif key in profile.sensitive:
            kwargs["resolve"] = _recording(field.resolve, key)
        return GraphQLField(**kwargs)

    def object_fields(t: GraphQLObjectType | GraphQLInterfaceType) -> Callable[[], dict[str, Any]]:
        return lambda: {
            name: output_field(t.name, name, t.fields[name]) for name in plan.fields[t.name]
        }

    def interfaces_of(t: GraphQLObjectType | GraphQLInterfaceType) -> Callable[[], list[Any]]:
        def interfaces() -> list[Any]:
            kept = []
            for interface in t.interfaces:
                if interface.name in plan.dropped:
                    continue
                if t.name in plan.implementations(interface) or isinstance(t, GraphQLInterfaceType):
                    kept.append(named(interface))
            return kept

        return interfaces

    for t in schema.type_map.values():
        if t.name in plan.dropped:
            continue
        if t.name.startswith("__") or isinstance(t, GraphQLScalarType):
            built[t.name] = t
        elif isinstance(t, GraphQLEnumType):
            # A shallow clone keeps strawberry's enum subclass (its serialisation of Python
            # enum members) with only the kept values; the value lookup is rebuilt from them.
            clone = object.__new__(type(t))
            clone.__dict__.update(t.__dict__)
            clone.__dict__.pop("_value_lookup", None)
            clone.__dict__["values"] = {v: t.values[v] for v in plan.enum_values[t.name]}
            built[t.name] = clone
        elif isinstance(t, GraphQLObjectType):
            built[t.name] = GraphQLObjectType(
                **_kwargs(t, fields=object_fields(t), interfaces=interfaces_of(t))
            )
        elif isinstance(t, GraphQLInterfaceType):
            built[t.name] = GraphQLInterfaceType(
                **_kwargs(t, fields=object_fields(t), interfaces=interfaces_of(t))
            )
        elif isinstance(t, GraphQLUnionType):
            members = [m for m in t.types if m.name not in plan.dropped]
            built[t.name] = GraphQLUnionType(
                **{
                    **t.to_kwargs(),
                    "types": lambda members=members: [named(m) for m in members],
                    "resolve_type": _union_resolver(t),
                }
            )
        elif isinstance(t, GraphQLInputObjectType):
            built[t.name] = _input_type(t, plan.input_fields[t.name], wrap, plan.enum_values)

    def root(t: GraphQLObjectType | None) -> Any:
        return None if t is None or t.name in plan.dropped else built[t.name]

    filtered = GraphQLSchema(
        query=root(schema.query_type),
        mutation=root(schema.mutation_type),
        subscription=root(schema.subscription_type),
        # The rest is collected from the roots: a type the role cannot reach is not in its
        # schema. Implementations of Node are reachable through `node(id:)`.
        types=[t for t in built.values() if isinstance(t, GraphQLObjectType) and t.interfaces],
        directives=schema.directives,
        # What the schema was cut for: compiled execution masks and notes reads by it, so a
        # plan always agrees with the resolvers of the schema it runs against.
        extensions={PROFILE: profile},
    )
    errors = validate_schema(filtered)
    if errors:
        raise ValueError(f"role {profile.role}: invalid schema: {errors[0].message}")
    return filtered


def _kwargs(t: Any, **changes: Any) -> dict[str, Any]:
    """A graphql-core type's constructor arguments, with some replaced."""
    kwargs: dict[str, Any] = dict(t.to_kwargs())
    kwargs.update(changes)
    return kwargs


def _union_resolver(original: GraphQLUnionType) -> Any:
    """strawberry's union resolver checks the type it finds against the union it was built for
    (by identity), so it is asked about that one; graphql-core then looks the returned name up
    in the role's schema."""
    resolve = original.resolve_type
    if resolve is None:
        return None
    return lambda root, info, _abstract: resolve(root, info, original)


def _input_type(
    t: GraphQLInputObjectType,
    kept: list[str],
    wrap: Callable[[Any], Any],
    enum_values: Mapping[str, list[str]],
) -> GraphQLInputObjectType:
    def fields() -> dict[str, GraphQLInputField]:
        return {
            name: GraphQLInputField(**_input_kwargs(t.fields[name], wrap, enum_values))
            for name in kept
        }

    return GraphQLInputObjectType(**_kwargs(t, fields=fields))


def _input_kwargs(
    item: GraphQLArgument | GraphQLInputField,
    wrap: Callable[[Any], Any],
    enum_values: Mapping[str, list[str]],
) -> dict[str, Any]:
    """An argument's or input field's constructor arguments in the role's schema. A default
    that is an enum value the role's schema dropped (GridOrder.field = PATH, for a role that
    reads Grid.code but not Grid.path) goes too, or the schema could not even be printed: the
    client then names a value it has."""
    kwargs: dict[str, Any] = {**item.to_kwargs(), "type_": wrap(item.type)}
    target = get_named_type(item.type)
    default = item.default_value
    if isinstance(target, GraphQLEnumType) and default is not Undefined and default is not None:
        # strawberry keeps the Python enum member as the default, graphql-core its value.
        value = getattr(default, "value", default)
        name = next((n for n, v in target.values.items() if v.value == value), None)
        if name is not None and name not in enum_values.get(target.name, ()):
            kwargs["default_value"] = Undefined
    return kwargs


def _resolve(resolve: Any, source: Any, info: GraphQLResolveInfo, kwargs: dict[str, Any]) -> Any:
    if resolve is None:
        return default_field_resolver(source, info, **kwargs)
    return resolve(source, info, **kwargs)


def _record(info: GraphQLResolveInfo, key: str, source: Any) -> None:
    reads = getattr(info.context, "reads", None)
    if reads is not None:
        reads.add(key, source)


def shown_masked(access: Any, kind: str, value: Any, source: Any) -> str | None:
    """What a masked field shows of `value`, read from the row `source`: the mask, or the value
    in full when an open emergency grant covers the row (hub.authz.access)."""
    if value is not None and access.unmasks(source):
        return value.isoformat() if isinstance(value, date | datetime) else str(value)
    return masking.mask(kind, value)


def _masking(resolve: Any, key: str, kind: str) -> Any:
    def resolver(source: Any, info: GraphQLResolveInfo, **kwargs: Any) -> Any:
        value = _resolve(resolve, source, info, kwargs)
        assert not isawaitable(value), f"{key}: masked fields are plain values"
        _record(info, key, source)
        return shown_masked(info.context.access, kind, value, source)

    return resolver


def _recording(resolve: Any, key: str) -> Any:
    def resolver(source: Any, info: GraphQLResolveInfo, **kwargs: Any) -> Any:
        value = _resolve(resolve, source, info, kwargs)
        _record(info, key, source)
        return value

    return resolver


def role_schema(full: Schema, profile: Profile) -> Schema:
    """A strawberry Schema that shares `full`'s extensions and config and runs `profile`'s
    graphql-core schema."""
    schema = copy.copy(full)
    schema._schema = filter_schema(full._schema, profile)
    schema._schema._strawberry_schema = schema  # type: ignore[attr-defined]
    return schema
