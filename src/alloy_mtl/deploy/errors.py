"""The one error type of the deploy package: every problem found, one line each."""

from __future__ import annotations

from collections.abc import Iterable


class DeployError(Exception):
    """Compiling or submitting a pipeline cannot go on.

    Holds every problem found (collected before failing), each a single line that names the offending
    pipeline, group, dataset, parameter, cron expression or host.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = [str(problem) for problem in problems]
        if not self.problems:
            raise ValueError("DeployError needs at least one problem")
        super().__init__(self._format())

    def _format(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"{len(self.problems)} problems:\n{lines}"
