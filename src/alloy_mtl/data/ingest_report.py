"""The ingest report: one row per file of a lab folder with its status, and the one error that lists them all.

Statuses: ``ok`` (ingested), ``bad`` (unusable file or folder; stops the run with ``on_bad_file: fail``),
``skipped`` (unusable and dropped, ``on_bad_file: skip``), ``ignored`` (not an image of the layout: a
``.txt`` beside the images, a file outside the alloy folders), ``error`` (a problem of the dataset, not of
one file: metadata values, an alloy left without images; stops the run whatever ``on_bad_file`` says).
"""

from __future__ import annotations

import logging

import pandas as pd

from alloy_mtl.data.errors import DataValidationError

logger = logging.getLogger(__name__)

REPORT_COLUMNS: tuple[str, ...] = (
    "path",
    "image_id",
    "designation",
    "alloy",
    "given_split",
    "status",
    "location",
    "problem",
)
STATUSES: tuple[str, ...] = ("ok", "bad", "skipped", "ignored", "error")
FAILING: tuple[str, ...] = ("bad", "error")
MAX_LISTED_PROBLEMS = 50


def empty_report() -> pd.DataFrame:
    """A report without rows (the generated dataset has no files)."""
    return pd.DataFrame({column: pd.Series(dtype=str) for column in REPORT_COLUMNS})


def problem_lines(report: pd.DataFrame, statuses: tuple[str, ...] = FAILING) -> list[str]:
    """One ``location: problem`` line per distinct problem of the given statuses, in report order.

    A problem shared by several files (a folder of an unknown alloy) is one line with the file count.
    """
    rows = report[report["status"].isin(statuses)]
    if rows.empty:
        return []
    counts = rows.groupby(["location", "problem"], sort=False).size()
    return [
        f"{location}: {problem}" + (f" ({n} files)" if n > 1 else "")
        for (location, problem), n in counts.items()
    ]


def capped(lines: list[str], limit: int = MAX_LISTED_PROBLEMS) -> str:
    """``lines`` joined, at most ``limit`` of them, then how many more there are."""
    shown = lines[:limit]
    more = len(lines) - len(shown)
    return "\n".join(f"  {line}" for line in shown) + (f"\n  ... and {more} more" if more > 0 else "")


def raise_for_report(report: pd.DataFrame, where: str, report_note: str = "") -> None:
    """Raise one :class:`DataValidationError` listing every ``bad`` and ``error`` row; log ``skipped`` ones.

    ``report_note`` (where the report was saved) ends the message.

    Raises:
        DataValidationError: ``"<n> problem(s) ingesting <where>:"`` then one line per problem (at most
            :data:`MAX_LISTED_PROBLEMS`, then the count of the rest) and where the full report is.
    """
    skipped = problem_lines(report, ("skipped",))
    if skipped:
        n_files = int((report["status"] == "skipped").sum())
        logger.warning(
            "Skipped %d bad file(s) of %s (on_bad_file: skip):\n%s", n_files, where, capped(skipped)
        )
    lines = problem_lines(report)
    if lines:
        note = f"\n{report_note}" if report_note else ""
        raise DataValidationError(
            f"{len(lines)} problem(s) ingesting {where}; no data was ingested:\n{capped(lines)}{note}"
        )
    counts = report["status"].value_counts().to_dict()
    logger.info("Ingest report of %s: %s", where, counts)
