"""gradcheck: run a PyTorch training script and trace every missing gradient to the line that caused it.

Public API (the CLI is a thin shell over it)::

    import gradcheck_cli
    with gradcheck_cli.watch() as gc:   # prints the report on exit
        train_one_step()
    assert gc.report.ok

``@gradcheck_cli.check(...)`` is the decorator form; ``%load_ext gradcheck_cli`` gives the
``%%gradcheck`` cell magic in Jupyter. ``Session`` imports torch; everything is loaded lazily so
the report model and renderers stay importable without it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Config",
    "GradcheckError",
    "Report",
    "ScriptInfo",
    "Session",
    "__version__",
    "check",
    "watch",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext gradcheck_cli``: registers the ``%%gradcheck`` cell magic."""
    from gradcheck_cli.magic import register

    register(ipython)


def __getattr__(name: str) -> Any:
    if name in ("watch", "check", "GradcheckError"):
        from gradcheck_cli import api

        return getattr(api, name)
    if name == "Session":
        from gradcheck_cli import session

        return getattr(session, name)
    if name == "Config":
        from gradcheck_cli.config import Config

        return Config
    if name in ("Report", "ScriptInfo"):
        from gradcheck_cli import model

        return getattr(model, name)
    raise AttributeError(name)
