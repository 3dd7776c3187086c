"""The 18-digit resident identity number (GB 11643-1999): checksum, birth date, gender."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import BadUserInput
from hub.residents import idcard
from tests.conftest import GraphQLClient
from tests.world import World

# The standard's own examples: a woman born 1949-12-31 in Beijing (check character X) and a man
# born 1880-01-01 in Guangdong.
STANDARD_EXAMPLES = [
    ("11010519491231002X", date(1949, 12, 31), "female"),
    ("440524188001010014", date(1880, 1, 1), "male"),
]

regions = st.sampled_from(["110105", "310104", "440524", "510107", "650102"])
births = st.dates(min_value=date(1880, 1, 1), max_value=date.today())
sequences = st.integers(min_value=0, max_value=999)
fast = settings(max_examples=150, database=None, deadline=None)


@pytest.mark.parametrize(("number", "born", "gender"), STANDARD_EXAMPLES)
def test_standard_examples(number: str, born: date, gender: str) -> None:
    parsed = idcard.parse(number)
    assert (parsed.value, parsed.birth_date, parsed.gender) == (number, born, gender)
    assert idcard.check_character(number[:17]) == number[17]


def test_lower_case_x_and_spaces_are_normalised() -> None:
    assert idcard.parse("  11010519491231002x ").value == "11010519491231002X"


def test_every_check_character_occurs() -> None:
    # MOD 11-2 has eleven results, the eleventh written X.
    seen = {idcard.make("110105", date(1990, 1, 1), seq)[-1] for seq in range(1000)}
    assert seen == set("0123456789X")


@fast
@given(regions, births, sequences)
def test_make_then_parse(region: str, born: date, sequence: int) -> None:
    number = idcard.make(region, born, sequence)
    assert len(number) == 18 and number.startswith(region)
    parsed = idcard.parse(number)
    assert parsed.value == number
    assert parsed.birth_date == born
    assert parsed.gender == ("male" if sequence % 2 else "female")


@fast
@given(regions, births, sequences, st.integers(0, 17), st.integers(1, 10))
def test_any_single_changed_character_is_caught(
    region: str, born: date, sequence: int, position: int, shift: int
) -> None:
    number = idcard.make(region, born, sequence)
    alphabet = "0123456789X" if position == 17 else "0123456789"
    if position < 17:
        shift = shift % 10 or 1
    changed = alphabet[(alphabet.index(number[position]) + shift) % len(alphabet)]
    corrupted = number[:position] + changed + number[position + 1 :]
    assert corrupted != number
    with pytest.raises(BadUserInput) as caught:
        idcard.parse(corrupted)
    assert caught.value.extensions == {"field": "idNumber"}


def _checked(first17: str) -> str:
    return first17 + idcard.check_character(first17)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("11010519491231002", "17 digits"),
        ("11010519491231002X1", "17 digits"),
        ("1101051949123100X2", "17 digits"),
        ("11010519491231002Y", "17 digits"),
        ("110105194912310021", "checksum"),
        (_checked("11010519490229002"), "impossible birth date"),  # 1949 was no leap year
        (_checked("11010519491332002"), "impossible birth date"),
        (_checked("11010518791231002"), "impossible birth date"),
        (_checked(f"110105{date.today() + timedelta(days=1):%Y%m%d}002"), "impossible birth date"),
    ],
)
def test_refusals_name_the_field_and_never_the_number(number: str, message: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        idcard.parse(number)
    error = caught.value
    assert message in error.message
    assert error.extensions == {"field": "idNumber"}
    for part in (number, number[:6], number[6:14], number[:17]):
        assert part not in error.message


def test_leap_day_is_a_birth_date() -> None:
    number = idcard.make("110105", date(2000, 2, 29), 7)
    assert idcard.parse(number).birth_date == date(2000, 2, 29)


async def test_the_api_derives_gender_and_birth_date(gql: GraphQLClient, world: World) -> None:
    document = "mutation($input: ResidentInput!) { createResident(input: $input) { idNumber gender birthDate } }"
    for number, born, gender in STANDARD_EXAMPLES:
        data = await gql.data(
            document,
            {
                "input": {
                    "name": "示例",
                    "idNumber": number.lower(),
                    "address": "示例地址",
                    "gridCode": "G1",
                }
            },
        )
        assert data["createResident"] == {
            "idNumber": number,
            "gender": gender.upper(),
            "birthDate": born.isoformat(),
        }
    # Changing the number changes what is derived from it.
    rid = (await gql.data('{ residents(first: 1, filter: {inGrid: "G1"}) { nodes { id } } }'))[
        "residents"
    ]["nodes"][0]["id"]
    new = idcard.make("310104", date(2001, 7, 1), 12)
    data = await gql.data(
        "mutation($id: ID!, $n: String!) { updateResident(id: $id, input: {idNumber: $n}) { idNumber gender birthDate } }",
        {"id": rid, "n": new},
    )
    assert data["updateResident"] == {
        "idNumber": new,
        "gender": "FEMALE",
        "birthDate": "2001-07-01",
    }


def test_full_width_digits_and_x_are_the_ascii_number() -> None:
    number = "11010519491231002X"
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in number.lower())  # "１１...ｘ"
    assert full_width != number and not full_width.isascii()
    assert idcard.parse(full_width).value == number
    assert idcard.parse("\u3000" + full_width[:9] + number[9:]).value == number
    # Digits of other scripts are not normalised to ASCII by NFKC: refused, not misread.
    arabic_indic = number[:5] + "\u0663" + number[6:]
    with pytest.raises(BadUserInput):
        idcard.parse(arabic_indic)


@pytest.mark.parametrize("zone", ["Etc/GMT-14", "Etc/GMT+12"])  # UTC+14 and UTC-12
def test_not_in_the_future_means_the_utc_day(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the host's time zone: born on today's UTC date is possible, born on the next
    UTC day is not. (Between them, the two zones differ from UTC's date at any hour of the day,
    so a check against the local date fails one of them.)"""
    import time
    from datetime import UTC, datetime

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        for _ in range(3):  # retry if the UTC date turns over between the two readings
            today = datetime.now(UTC).date()
            today_number = idcard.make("110105", today, 1)
            tomorrow_number = idcard.make("110105", today + timedelta(days=1), 1)
            accepted = idcard.parse(today_number).birth_date
            with pytest.raises(BadUserInput):
                idcard.parse(tomorrow_number)
            if datetime.now(UTC).date() == today:
                break
        assert accepted == today
    finally:
        monkeypatch.undo()
        time.tzset()
