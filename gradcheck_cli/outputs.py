"""Report files: checked before the script starts, written at the end without losing the run.

A path that cannot be written (a directory, a path under a regular file, a read-only filesystem)
is refused before the script runs — one line, exit 2. When writing still fails at the end (the
folder vanished, the disk is full), the console report is printed anyway and the failure is one
line with exit status :data:`~gradcheck_cli.errors.EXIT_OUTPUT`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable

from gradcheck_cli.errors import CommandError


def _nearest_existing(directory: str) -> str:
    while not os.path.exists(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def output_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a report file, or None when it can."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return "it is a directory"
    directory = _nearest_existing(os.path.dirname(full))
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    try:  # the only honest test (read-only mounts, /proc, ACLs, root): create and remove a file
        fd, probe = tempfile.mkstemp(prefix=".gradcheck-probe-", dir=directory)
    except OSError as e:
        return f"cannot create files in {directory}: {e.strerror or e}"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def check_outputs(paths: dict[str, str | None]) -> None:
    """Refuse unwritable report paths up front: ``{"--json": path, ...}`` -> CommandError."""
    for option, path in paths.items():
        if not path:
            continue
        problem = output_problem(path)
        if problem is not None:
            raise CommandError(f"{option} {path}: cannot write the report there ({problem})")


def write_all(files: list[tuple[str, str, Callable[[], str]]]) -> list[str]:
    """Write each ``(option, path, render)``; return one line per file that could not be written."""
    from gradcheck_cli.report import write_atomic

    failed: list[str] = []
    for option, path, render in files:
        try:
            write_atomic(path, render())
        except OSError as e:
            reason = e.strerror or str(e)
            failed.append(f"could not write {option} {path}: {reason}")
    return failed
