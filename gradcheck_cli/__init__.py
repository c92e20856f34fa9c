"""gradcheck: run a PyTorch training script and trace every missing gradient to the line that caused it.

Public API (the CLI is a thin shell over it)::

    import gradcheck_cli
    with gradcheck_cli.watch() as session:
        train_one_step()
    report = session.build_report(gradcheck_cli.ScriptInfo(path="<notebook>", argv=[]))

``watch`` and ``Session`` import torch; they are loaded lazily so the report model and renderers
stay importable without it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Config", "Report", "ScriptInfo", "Session", "__version__", "watch"]


def __getattr__(name: str) -> Any:
    if name in ("watch", "Session"):
        from gradcheck_cli import session

        return getattr(session, name)
    if name == "Config":
        from gradcheck_cli.config import Config

        return Config
    if name in ("Report", "ScriptInfo"):
        from gradcheck_cli import model

        return getattr(model, name)
    raise AttributeError(name)
