"""gradcheck's own errors: one typed exception that the CLI turns into one line and an exit code."""

from __future__ import annotations

# Exit-code policy (README "Exit codes", `gradcheck --help`).
EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3  # the script succeeded but gradcheck failed to check it completely
EXIT_OUTPUT = (
    4  # a report file (--json/--sarif) could not be written; the console report was printed
)
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A problem with what the user asked gradcheck to do (not with their script).

    The CLI prints ``gradcheck: error: <message>`` on stderr and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class GradcheckExit(BaseException):
    """Ends the user's script from inside it (``stop_after``, a config name that matches nothing).

    A BaseException, so the script's own ``except Exception:`` cannot swallow it; the runner turns
    it into an exit status without a traceback.
    """

    def __init__(self, exit_code: int, message: str, stopped_early: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.stopped_early = stopped_early
