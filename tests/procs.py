"""Running gradcheck and python in child processes, shared by the runner test modules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).parent / "runner_fixtures"
TIMEOUT_S = 120


def console_script() -> list[str]:
    """The installed ``gradcheck`` entry point, or ``python -m gradcheck_cli`` if there is none."""
    beside_python = Path(sys.executable).with_name("gradcheck")
    if beside_python.is_file():
        return [str(beside_python)]
    found = shutil.which("gradcheck")
    return [found] if found else [sys.executable, "-m", "gradcheck_cli"]


GRADCHECK_FORMS: dict[str, list[str]] = {
    "console-script": console_script(),
    "python-m": [sys.executable, "-m", "gradcheck_cli"],
}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONSAFEPATH", "PYTHONPATH", "PYTHONSTARTUP", "FORCE_COLOR", "COLUMNS"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    return env


@dataclass(frozen=True)
class Result:
    """What one process did; ``returncode`` is None when it ran past ``TIMEOUT_S``."""

    argv: Sequence[str]
    returncode: int | None
    stdout: bytes
    stderr: str

    def describe(self) -> str:
        return (
            f"command: {list(self.argv)}\nexit: {self.returncode}\n"
            f"stdout:\n{self.stdout.decode(errors='replace')}\nstderr:\n{self.stderr}"
        )


def _run(argv: Sequence[str], cwd: Path) -> Result:
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=child_env(), capture_output=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        return Result(argv, None, exc.stdout or b"", f"<timed out after {TIMEOUT_S} s>")
    return Result(argv, proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def run_all(commands: Mapping[str, tuple[Sequence[str], Path]]) -> dict[str, Result]:
    """Run every command concurrently; keys are the caller's names for them."""
    workers = min(8, max(2, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(_run, argv, cwd) for key, (argv, cwd) in commands.items()}
        return {key: future.result() for key, future in futures.items()}
