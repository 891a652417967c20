"""The designation parser: every spelling family, variants, tempers, chemical names, the mapping, refusals."""

from __future__ import annotations

import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.designations import CHEMICAL_DESIGNATIONS, DesignationError, parse_designation


@pytest.mark.parametrize("alloy", ALLOYS)
@pytest.mark.parametrize(
    "template",
    [
        "{}",
        "Al{}",
        "AL-{}",
        "Al {}",
        "al_{}",
        "AA{}",
        "AA-{}",
        "EN AW-{}",
        "EN AW {}",
        "ENAW{}",
        "EN-AW-{}",
        "AW-{}",
        "Aluminium {}",
        "A9{}",
        "UNS A9{}",
        " {} ",
    ],
)
def test_aluminium_association_number_with_any_prefix(template: str, alloy: str) -> None:
    parsed = parse_designation(template.format(alloy))
    assert (parsed.alloy, parsed.variant, parsed.temper) == (alloy, "", "")
    assert parsed.text == template.format(alloy).strip()


@pytest.mark.parametrize(
    ("text", "alloy", "variant"),
    [("1050A", "1050", "A"), ("EN AW-1050A", "1050", "A"), ("Al2017A", "2017", "A"), ("6082b", "6082", "B")],
)
def test_national_variant_letter_is_kept(text: str, alloy: str, variant: str) -> None:
    parsed = parse_designation(text)
    assert (parsed.alloy, parsed.variant, parsed.temper) == (alloy, variant, "")


@pytest.mark.parametrize(
    ("text", "alloy", "variant", "temper"),
    [
        ("7075-T6", "7075", "", "T6"),
        ("7075T6", "7075", "", "T6"),
        ("7075 T651", "7075", "", "T651"),
        ("7075-T7351", "7075", "", "T7351"),
        ("6082_T6", "6082", "", "T6"),
        ("6082-T6511", "6082", "", "T6511"),
        ("5083-H111", "5083", "", "H111"),
        ("Al-1050-h14", "1050", "", "H14"),
        ("1050-O", "1050", "", "O"),
        ("1050A-H24", "1050", "A", "H24"),
        ("EN AW-2017A-T4", "2017", "A", "T4"),
        ("7075-F", "7075", "", "F"),
        ("AlZn5.5MgCu-T6", "7075", "", "T6"),
    ],
)
def test_temper_suffix_is_stripped(text: str, alloy: str, variant: str, temper: str) -> None:
    parsed = parse_designation(text)
    assert (parsed.alloy, parsed.variant, parsed.temper) == (alloy, variant, temper)


@pytest.mark.parametrize(("name", "expected"), list(CHEMICAL_DESIGNATIONS.items()))
def test_every_chemical_designation_in_the_table(name: str, expected: tuple[str, str]) -> None:
    parsed = parse_designation(name)
    assert (parsed.alloy, parsed.variant) == expected


@pytest.mark.parametrize(
    ("text", "alloy"),
    [
        ("AlZn5.5MgCu", "7075"),
        ("AlZn5,5MgCu", "7075"),  # decimal comma, as EN 573-3 prints it
        ("Al Zn5,5MgCu", "7075"),
        ("alzn5.5mgcu", "7075"),
        ("Al 99,5", "1050"),
        ("AlMg4,5Mn0,7", "5083"),
        ("AlSi1MgMn", "6082"),
        ("AlCu4MgSi(A)", "2017"),
        ("EN AW-7075 [AlZn5,5MgCu]", "7075"),
        ("EN AW-2017A [Al Cu4MgSi(A)]", "2017"),
    ],
)
def test_chemical_designation_spellings(text: str, alloy: str) -> None:
    assert parse_designation(text).alloy == alloy


def test_numbers_from_a_csv_column() -> None:
    assert parse_designation(7075).alloy == "7075"


def test_mapping_covers_any_other_name_and_is_itself_parsed() -> None:
    names = {"batch 7 (hard)": "7075-T6", "pure": "1050"}
    parsed = parse_designation("batch 7 (hard)", names)
    assert (parsed.alloy, parsed.temper, parsed.text) == ("7075", "T6", "batch 7 (hard)")
    assert parse_designation("pure", names).alloy == "1050"
    assert parse_designation("Al2017", names).alloy == "2017"  # names not in the mapping still parse


@pytest.mark.parametrize("text", ["Al-1050 batch2", "AlMg3", "10500", "1050AB", "7075-T", "foo", ""])
def test_unknown_spelling_lists_the_accepted_forms(text: str) -> None:
    with pytest.raises(DesignationError) as err:
        parse_designation(text)
    message = str(err.value)
    assert f"unknown alloy designation {text.strip()!r}" in message
    for form in ("Al1050", "AA1050", "EN AW-1050A", "7075-T6", "AlZn5.5MgCu (7075)", "alloy_names"):
        assert form in message


@pytest.mark.parametrize("text", ["6061", "Al6061-T6", "EN AW-2024"])
def test_alloy_outside_the_five_is_named(text: str) -> None:
    with pytest.raises(DesignationError, match=r"is alloy \d{4}, not one of the five alloys") as err:
        parse_designation(text)
    assert err.value.reason.startswith(f"designation {text!r}")


def test_chemical_designation_must_belong_to_the_number() -> None:
    with pytest.raises(DesignationError, match=r"\[AlSi1MgMn\] does not belong to 7075"):
        parse_designation("EN AW-7075 [AlSi1MgMn]")
