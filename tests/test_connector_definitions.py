"""Connector definitions: the shipped ones load and fit the policy; broken ones are refused with
the file, the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.authz.policy import Policy
from hub.authz.profile import decide
from hub.config import DEFAULT_CONNECTORS_DIR, DEFAULT_POLICY_DIR
from hub.connectors.definition import DefinitionError, load_directory, load_file
from hub.connectors.mapping import MappingError, map_record

VALID = """\
name = "registry"
kind = "file"
direction = "pull"
entity = "resident"
subject = "connector:household"

[source]
path = "/data/dump.csv"

[match]
external_id = "id"

[mapping]
name = "姓名"
tags = { from = "标签", separator = "、" }
"""


def _write(tmp_path: Path, text: str, name: str = "registry") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_definitions_load_and_fit_the_policy() -> None:
    definitions = load_directory(DEFAULT_CONNECTORS_DIR)
    assert {"household", "household-export", "health", "hotline-12345", "public-security"} <= set(
        definitions
    )
    policy = Policy.from_directory(DEFAULT_POLICY_DIR)
    for definition in definitions.values():
        assert definition.subject in policy.subjects, definition.name
        if definition.direction == "pull":
            for obj in definition.input_objects():
                assert decide(policy, definition.subject, obj, "set"), (definition.name, obj)


def test_a_valid_definition_maps_records(tmp_path: Path) -> None:
    definition = load_file(_write(tmp_path, VALID))
    mapped = map_record(
        definition, {"id": " 7 ", "姓名": " 王芳 ", "标签": "elderly、key_care", "extra": 1}
    )
    assert mapped.external_id == "7"
    assert mapped.values == {"name": "王芳", "tags": ["elderly", "key_care"]}
    # A missing source field leaves the GridHub field alone; a missing id is refused.
    assert map_record(definition, {"id": "8"}).values == {}
    with pytest.raises(MappingError) as missing:
        map_record(definition, {"姓名": "x"})
    assert missing.value.code == "MISSING_FIELD"


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (('kind = "file"', 'kind = "ftp"'), 2, "`kind` must be one of"),
        (('subject = "connector:household"', 'subject = "health"'), 5, "connector:<name>"),
        (('name = "姓名"', 'nickname = "昵称"'), 14, "`nickname` is not a resident field"),
        (('[match]\nexternal_id = "id"', "[match]"), 10, "needs `external_id` or `natural_key`"),
        (
            ('path = "/data/dump.csv"', 'path = "/d.csv"\napi_token = "abc"'),
            9,
            "looks like a secret",
        ),
        (
            (
                'tags = { from = "标签", separator = "、" }',
                'tags = { from = "标签", transform = "upper" }',
            ),
            15,
            "only list fields",
        ),
        (
            ('direction = "pull"', 'direction = "pull"\nschedule = "hourly"'),
            4,
            "`schedule` must be",
        ),
        (('name = "registry"', 'name = "other"'), 1, "must match the file name"),
        (("[mapping]", "[mapping"), 13, "not valid TOML"),
        (('external_id = "id"', 'external_id = "姓名"'), 11, "is personal data"),
    ],
)
def test_broken_definitions_are_refused_with_the_line(
    tmp_path: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    old, new = change
    assert old in VALID
    path = _write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(DefinitionError) as refused:
        load_file(path)
    assert refused.value.line == line, str(refused.value)
    assert reason in str(refused.value)
    assert str(refused.value).startswith(f"{path}:{line}: ")


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = VALID.replace('path = "/data/dump.csv"', 'path = "${DUMP_DIR}/dump.csv"') + (
        '\n[auth]\nheader = "X-Key"\nsecret_env = "REGISTRY_KEY"\n'
    )
    definition = load_file(_write(tmp_path, text))
    with pytest.raises(DefinitionError, match="DUMP_DIR"):
        definition.resolved_source()
    monkeypatch.setenv("DUMP_DIR", "/srv")
    assert definition.resolved_source()["path"] == "/srv/dump.csv"
    monkeypatch.setenv("REGISTRY_KEY", "s3cret")
    assert definition.auth is not None and definition.auth.headers() == {"X-Key": "s3cret"}
