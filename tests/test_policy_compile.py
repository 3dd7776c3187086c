"""Compiling a policy refuses what would give a masked value away or mean something else to
Casbin than to GridHub."""

from __future__ import annotations

import pytest

from hub.api.registry import catalogue_for
from hub.api.schema import build_schema
from hub.authz.policy import Policy, PolicyError
from hub.authz.profile import Level, compile_profiles
from hub.config import DEFAULT_POLICY_DIR

MODEL = (DEFAULT_POLICY_DIR / "model.conf").read_text(encoding="utf-8")


def compile_text(text: str) -> dict[str, object]:
    return compile_profiles(Policy.parse(MODEL, text), catalogue_for(build_schema()))


def test_a_masked_id_number_beside_a_full_birth_date_is_refused() -> None:
    base = "p, r, Resident.idNumber, read_masked, allow\ng2, Resident.idNumber, mask:id_number\n"
    with pytest.raises(PolicyError, match=r"Resident\.birthDate in full"):
        compile_text(base + "p, r, Resident.birthDate, read, allow\n")
    # Masked or hidden birth dates keep the ID number's hidden digits hidden.
    masked = compile_text(
        base
        + "p, r, Resident.birthDate, read_masked, allow\n"
        + "g2, Resident.birthDate, mask:birth_date\n"
    )
    assert masked["r"].level("Resident.birthDate") is Level.MASKED  # type: ignore[attr-defined]
    assert compile_text(base)["r"].level("Resident.birthDate") is Level.HIDDEN  # type: ignore[attr-defined]


@pytest.mark.parametrize("separator", ["\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
def test_line_separators_other_than_newline_are_refused(separator: str) -> None:
    """Casbin's file adapter splits lines on \\n only; Python's splitlines on many more. A
    comment hiding a policy line behind another separator would mean different things."""
    text = f"# a comment{separator}p, public, Resident.birthDate, read, allow\n"
    with pytest.raises(PolicyError, match="character"):
        Policy.parse(MODEL, text)


def test_the_default_policy_compiles() -> None:
    profiles = compile_text((DEFAULT_POLICY_DIR / "policy.csv").read_text(encoding="utf-8"))
    assert profiles["health"].level("Resident.birthDate") is Level.MASKED  # type: ignore[attr-defined]
    assert profiles["public_security"].level("Resident.birthDate") is Level.FULL  # type: ignore[attr-defined]


def test_a_role_that_cannot_read_notice_bodies_cannot_search_them() -> None:
    """NoticeFilter.search matches titles and bodies, so it needs both read in full: a search
    would otherwise find out, word by word, what a hidden body says."""
    from graphql import GraphQLInputObjectType, parse, validate

    from hub.api.roles import role_schema

    full = build_schema()
    # Notice.status keeps NoticeFilter in the schema (its status filter) for both roles.
    titles_only = (
        "p, r, Notice, rows:all, allow\n"
        "p, r, Notice.title, read, allow\n"
        "p, r, Notice.status, read, allow\n"
    )
    both = titles_only + "p, r, Notice.body, read, allow\n"
    query = parse('{ notices(filter: {search: "停水"}) { nodes { title } } }')
    searched: dict[str, bool] = {}
    for name, text in (("titles_only", titles_only), ("both", both)):
        schema = role_schema(full, compile_text(text)["r"])._schema  # type: ignore[arg-type]
        notice_filter = schema.type_map["NoticeFilter"]
        assert isinstance(notice_filter, GraphQLInputObjectType)
        searched[name] = "search" in notice_filter.fields
        assert (validate(schema, query) == []) is searched[name]
    assert searched == {"titles_only": False, "both": True}


def test_notices_apply_in_a_grid_only_for_a_role_that_reads_their_scope() -> None:
    """NoticeFilter.appliesTo tells which grids a notice is addressed to, exactly as inGrid does,
    so it needs Notice.scope read in full; the PUBLISHED_AT order tells publication times."""
    from graphql import GraphQLEnumType, GraphQLInputObjectType, parse, validate

    from hub.api.roles import role_schema

    full = build_schema()
    # Notice.status keeps NoticeFilter in the schema (its status filter) for both roles.
    without = "p, r, Notice, rows:all, allow\np, r, Notice.title, read, allow\n"
    without += "p, r, Notice.status, read, allow\n"
    scoped = without + "p, r, Notice.scope, read, allow\np, r, Notice.publishedAt, read, allow\n"
    query = parse(
        '{ notices(filter: {appliesTo: "C1"}, orderBy: {field: PUBLISHED_AT, direction: DESC})'
        " { nodes { title } } }"
    )
    offered: dict[str, tuple[bool, bool]] = {}
    for name, text in (("without", without), ("scoped", scoped)):
        schema = role_schema(full, compile_text(text)["r"])._schema  # type: ignore[arg-type]
        notice_filter = schema.type_map["NoticeFilter"]
        sort_field = schema.type_map["NoticeSortField"]
        assert isinstance(notice_filter, GraphQLInputObjectType)
        assert isinstance(sort_field, GraphQLEnumType)
        offered[name] = ("appliesTo" in notice_filter.fields, "PUBLISHED_AT" in sort_field.values)
        assert (validate(schema, query) == []) is all(offered[name])
    assert offered == {"without": (False, False), "scoped": (True, True)}
