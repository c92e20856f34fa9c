"""How a run ended, in one word and one sentence (no torch here).

The exit status alone cannot always say what happened: a script's own ``sys.exit(3)`` passes
through as 3, which is also gradcheck's internal-error status. The JSON's ``summary.outcome``
always says which (README "Exit codes"):

==================  =====================================================================
``clean``           the script succeeded and no gradient problem was found (exit 0)
``findings``        gradient findings at or above ``fail_on`` (exit 1, 0 with --exit-zero)
``script_failed``   the script raised or exited non-zero: its own status passes through
``interrupted``     Ctrl-C (exit 130)
``usage_error``     gradcheck refused its input, e.g. a config name matching nothing (exit 2)
``internal_error``  gradcheck failed while checking; the check is incomplete (exit 3)
==================  =====================================================================
"""

from __future__ import annotations

from gradcheck_cli.errors import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_USAGE,
)
from gradcheck_cli.model import Report

OUTCOMES = ("clean", "findings", "script_failed", "interrupted", "usage_error", "internal_error")
_FAILING = {"error": ("error",), "warning": ("error", "warning"), "never": ()}


def decide(report: Report, fail_on: str, stop_code: int | None = None) -> tuple[int, str]:
    """The exit status and the outcome word; ``stop_code``: gradcheck ended the script itself."""
    if stop_code is not None:
        return stop_code, "usage_error" if stop_code == EXIT_USAGE else "internal_error"
    code = report.script.exit_code or 0
    if report.script.interrupted:
        return code, "interrupted"
    if code != 0:
        return code, "script_failed"
    if any(f.severity in _FAILING[fail_on] for f in report.findings):
        return EXIT_FINDINGS, "findings"
    if report.internal_errors:
        return EXIT_INTERNAL, "internal_error"
    return EXIT_CLEAN, "clean"


def _calls(report: Report) -> str:
    checked, seen = report.steps_checked, report.steps_seen
    return f"{checked} of {seen} checked backward call{'s' if seen != 1 else ''}"


def ending(report: Report) -> str | None:
    """What the script did when it did not simply succeed, e.g. ``train.py raised ValueError after
    1 of 1 checked backward call`` — None for a normal end."""
    s = report.script
    if s.interrupted:
        if report.steps_seen == 0:
            return f"{s.path} was interrupted before the first backward()"
        return f"{s.path} was interrupted after {_calls(report)}"
    if s.stopped_early or not s.exit_code:
        return None
    if s.error is not None:
        what = f"{s.path} raised {s.error.type}"
    else:
        what = f"{s.path} exited with status {s.exit_code}"
    if report.steps_seen == 0:
        return f"{what} before calling backward(); nothing to check"
    return f"{what} after {_calls(report)}"
