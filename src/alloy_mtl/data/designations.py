"""Alloy designations as labs write them, parsed to one of the five alloys (one table, one function).

Accepted spellings (case-insensitive; space, ``-`` or ``_`` may separate the parts):

- Aluminium Association 4-digit number, bare or with a prefix: ``1050``, ``Al1050``, ``AL-1050``,
  ``Al 1050``, ``AA1050``, ``EN AW-1050``, ``ENAW1050``, ``AW-1050``; or its UNS number ``A91050``.
- a national variant letter right after the number: ``1050A``, ``EN AW-2017A`` -> alloy 1050 / 2017, the
  letter kept as ``variant``;
- a temper suffix: ``7075-T6``, ``7075 T651``, ``6082-T6511``, ``5083-H111``, ``1050-O``, ``2017A_T4``
  (``F``, ``O``, ``W``, ``H`` + 1-3 digits, ``T`` + 1-5 digits) -> stripped into ``temper``;
- the chemical designation of EN 573-3 (``AlZn5.5MgCu``, decimal comma or point, spaces ignored) or the
  older DIN 1725 one (``AlZnMgCu1.5``), alone or after the number in brackets
  (``EN AW-7075 [AlZn5,5MgCu]``).

Anything else, or a designation outside the five alloys, raises :class:`DesignationError`; a mapping
(``data_source.options.alloy_names``: ``{folder or CSV value: designation}``) covers other names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from alloy_mtl.constants import ALLOYS

#: Chemical designations -> (alloy, variant). EN 573-3 (the alloy registered in Europe: 1050A, 2017A)
#: and the withdrawn DIN 1725-1 names still printed on older stock and lab notes.
CHEMICAL_DESIGNATIONS: dict[str, tuple[str, str]] = {
    "Al99.5": ("1050", ""),  # EN AW-1050A [Al 99,5]; DIN Al99,5 (3.0255)
    "AlCu4MgSi": ("2017", ""),  # EN AW-2017 [Al Cu4MgSi]
    "AlCu4MgSi(A)": ("2017", "A"),  # EN AW-2017A [Al Cu4MgSi(A)]
    "AlCuMg1": ("2017", "A"),  # DIN 1725 (3.1325)
    "AlMg4.5Mn0.7": ("5083", ""),  # EN AW-5083 [Al Mg4,5Mn0,7]
    "AlMg4.5Mn": ("5083", ""),  # DIN 1725 (3.3547)
    "AlSi1MgMn": ("6082", ""),  # EN AW-6082 [Al Si1MgMn]
    "AlMgSi1": ("6082", ""),  # DIN 1725 (3.2315)
    "AlZn5.5MgCu": ("7075", ""),  # EN AW-7075 [Al Zn5,5MgCu]
    "AlZnMgCu1.5": ("7075", ""),  # DIN 1725 (3.4365)
}

#: One example per spelling family, shown in every error message.
ACCEPTED_FORMS: tuple[str, ...] = (
    "1050",
    "Al1050",
    "AL-1050",
    "Al 1050",
    "AA1050",
    "EN AW-1050A (variant letter kept)",
    "A91050 (UNS)",
    "7075-T6 / 5083-H111 / 1050-O (temper stripped)",
    "AlZn5.5MgCu or AlZn5,5MgCu (EN 573-3 chemical)",
    "EN AW-7075 [AlZn5,5MgCu]",
)

_SEP = r"[\s_-]*"
_TEMPER = r"(?P<temper>[FOW]|H\d{1,3}|T\d{1,5})"
_NUMERIC = re.compile(
    rf"""^(?:(?:EN{_SEP})?AW|AA|AL(?:UMINI?UM)?|UNS{_SEP}A9|A9)?{_SEP}
    (?P<number>[1-8]\d{{3}})
    (?P<variant>[A-HJ-NPR-Z](?![0-9]))?
    (?:{_SEP}(?:(?<=[\s_-]){_TEMPER}|(?P<temper_joined>[HT]\d{{1,5}})))?
    (?:{_SEP}\[(?P<chemical>[^\]]*)\])?$""",
    re.IGNORECASE | re.VERBOSE,
)
_CHEMICAL_TEMPER = re.compile(rf"^(?P<chemical>.*?){_SEP}(?:(?<=[\s_-]){_TEMPER})?$", re.IGNORECASE)


class DesignationError(ValueError):
    """A designation that is not one of the accepted spellings of the five alloys.

    ``reason`` says what is wrong; the message adds the accepted forms and the ways out.
    """

    def __init__(self, reason: str, hint: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}; {hint}" if hint else reason)


@dataclass(frozen=True)
class Designation:
    """A parsed designation: ``alloy`` (one of ALLOYS), national ``variant`` letter and ``temper`` ("" when
    absent), and the ``text`` as written."""

    alloy: str
    variant: str
    temper: str
    text: str


def _chemical_key(text: str) -> str:
    """Chemical designation normalised for lookup: no spaces, decimal point, case folded."""
    return re.sub(r"\s+", "", text).replace(",", ".").casefold()


_CHEMICAL_INDEX = {_chemical_key(name): value for name, value in CHEMICAL_DESIGNATIONS.items()}


def _accepted() -> str:
    chemical = ", ".join(
        f"{name} ({alloy}{variant})" for name, (alloy, variant) in CHEMICAL_DESIGNATIONS.items()
    )
    return f"accepted forms: {'; '.join(ACCEPTED_FORMS)}; chemical designations: {chemical}"


def _parse_numeric(text: str) -> tuple[str, str, str] | None:
    match = _NUMERIC.match(text)
    if match is None:
        return None
    number, variant = match["number"], (match["variant"] or "").upper()
    temper = (match["temper"] or match["temper_joined"] or "").upper()
    chemical = match["chemical"]
    if chemical is not None:
        found = _CHEMICAL_INDEX.get(_chemical_key(chemical))
        if found is None or found[0] != number:
            raise DesignationError(
                f"designation {text!r}: the chemical designation [{chemical}] does not belong to {number}"
            )
    return number, variant, temper


def _parse_chemical(text: str) -> tuple[str, str, str] | None:
    match = _CHEMICAL_TEMPER.match(text.strip())
    if match is None:  # pragma: no cover - the pattern matches any string
        return None
    found = _CHEMICAL_INDEX.get(_chemical_key(match["chemical"]))
    if found is None:
        return None
    return found[0], found[1], (match["temper"] or "").upper()


def parse_designation(text: object, alloy_names: Mapping[str, str] | None = None) -> Designation:
    """The alloy that ``text`` designates, with its variant letter and temper (see the module docstring).

    Args:
        text: a folder name or CSV ``alloy`` value (numbers from a CSV are accepted too: ``1050``).
        alloy_names: exact names (stripped, case-sensitive) mapped to a designation, checked first; the
            mapped designation is itself parsed (``{"batch_7": "7075-T6"}``).

    Raises:
        DesignationError: the text is no accepted spelling, or names an alloy outside the five; the message
            quotes it and lists the accepted forms.
    """
    raw = str(text).strip()
    if alloy_names and raw in alloy_names:
        mapped = parse_designation(alloy_names[raw])
        return Designation(mapped.alloy, mapped.variant, mapped.temper, raw)
    parsed = _parse_numeric(raw) or _parse_chemical(raw)
    if parsed is None:
        raise DesignationError(
            f"unknown alloy designation {raw!r}",
            f"{_accepted()}; or map the name to an alloy in data_source.options.alloy_names",
        )
    alloy, variant, temper = parsed
    if alloy not in ALLOYS:
        raise DesignationError(
            f"designation {raw!r} is alloy {alloy}, not one of the five alloys {list(ALLOYS)} this project "
            "classifies",
            "remove it, map it in data_source.options.alloy_names, or set on_bad_file: skip",
        )
    return Designation(alloy, variant, temper, raw)
