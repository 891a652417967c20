"""Project exceptions raised by the data layer."""

from __future__ import annotations


class DataValidationError(ValueError):
    """Data (metadata, images or a validation suite) breaks the data contract.

    The message names where the data came from (file or dataset), the failing column or expectation,
    the offending rows and the rule that failed.
    """
