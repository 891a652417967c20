"""KFP cron expressions: six fields, seconds first, checked before anything is sent."""

from __future__ import annotations

import pytest

from alloy_mtl.deploy.cron import validate_cron
from alloy_mtl.deploy.errors import DeployError


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 3 * * *",
        "0 */15 * * * ?",
        "30 0 9 ? * MON-FRI",
        "0 0 0 1,15 JAN-JUN *",
        " @daily ",
        "@every 6h30m",
    ],
)
def test_kfp_cron_expressions_pass(expression):
    assert validate_cron(expression) == expression.strip()


def test_a_five_field_unix_cron_is_refused_with_the_format_in_one_line():
    with pytest.raises(DeployError) as error:
        validate_cron("0 3 * * *")
    message = str(error.value)
    assert message == (
        "cron expression '0 3 * * *' has 5 fields; KFP's cron has six, seconds first "
        "(second minute hour day-of-month month day-of-week), e.g. '0 0 3 * * *' for 03:00 every day"
    )


def test_every_bad_field_is_named_in_one_line():
    with pytest.raises(DeployError) as error:
        validate_cron("61 0 25 * FOO ?/0")
    (problem,) = error.value.problems
    assert problem.startswith("cron expression '61 0 25 * FOO ?/0': ")
    for part in ("second field '61'", "hour field '25'", "month field 'FOO'", "day-of-week field '?/0'"):
        assert part in problem


@pytest.mark.parametrize("expression", ["@fortnightly", "0 0 5-1 * * *", "0 ? * * * *"])
def test_other_malformed_expressions_are_refused(expression):
    with pytest.raises(DeployError, match=r"cron expression"):
        validate_cron(expression)
