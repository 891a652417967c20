"""Check a KFP recurring-run cron expression before it reaches the server.

KFP schedules with robfig/cron's six-field format, seconds first::

    second minute hour day-of-month month day-of-week      e.g. "0 0 3 * * *" = 03:00 every day

plus the descriptors ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``,
``@hourly`` and ``@every <duration>``.
"""

from __future__ import annotations

import re

from alloy_mtl.deploy.errors import DeployError

FORMAT = "second minute hour day-of-month month day-of-week"
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_EVERY = re.compile(r"^@every\s+(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_MONTHS = {
    name: number for number, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)
}
_DAYS = {name: number for number, name in enumerate("SUN MON TUE WED THU FRI SAT".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)


def _value(text: str, low: int, high: int, names: dict[str, int]) -> int:
    number = names.get(text.upper()) if text.upper() in names else (int(text) if text.isdigit() else None)
    if number is None or not low <= number <= high:
        raise ValueError(f"'{text}' is not in {low}-{high}")
    return number


def _check_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> str | None:
    for item in text.split(","):
        base, slash, step = item.partition("/")
        try:
            if slash and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"step '{step}' is not a positive number")
            if base in ("*", "?"):
                if base == "?" and name not in ("day-of-month", "day-of-week"):
                    raise ValueError("'?' is only allowed for day-of-month and day-of-week")
                continue
            first, dash, last = base.partition("-")
            start = _value(first, low, high, names)
            if dash and _value(last, low, high, names) < start:
                raise ValueError(f"range '{base}' runs backwards")
        except ValueError as error:
            return f"{name} field '{text}': {error}"
    return None


def validate_cron(expression: str) -> str:
    """Return ``expression`` stripped when KFP accepts it.

    Raises:
        DeployError: one line naming the expression and every field that is wrong.
    """
    stripped = expression.strip()
    if stripped.startswith("@"):
        if stripped in _DESCRIPTORS or _EVERY.match(stripped):
            return stripped
        raise DeployError([f"cron expression '{expression}': unknown descriptor"])
    fields = stripped.split()
    if len(fields) != len(_FIELDS):
        raise DeployError(
            [
                f"cron expression '{expression}' has {len(fields)} fields; KFP's cron has six, seconds first "
                f"({FORMAT}), e.g. '0 0 3 * * *' for 03:00 every day"
            ]
        )
    problems = [
        problem
        for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True)
        if (problem := _check_field(text, name, low, high, names))
    ]
    if problems:
        raise DeployError([f"cron expression '{expression}': {'; '.join(problems)}"])
    return stripped
