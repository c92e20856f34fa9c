"""The programs that started gradcheck (its console script), counted as library code, not the
user's. Kept apart from ``sites`` so the CLI can register one before torch is imported."""

from __future__ import annotations

import os
import sys

LAUNCHERS: set[str] = set()


def add_launcher(path: str) -> None:
    """Count ``path`` (the program that started gradcheck) as library code, not the user's."""
    LAUNCHERS.add(os.path.abspath(path))
    sites = sys.modules.get("gradcheck_cli.sites")
    if sites is not None:
        sites.forget_user_files()
