"""Installs its own sys.excepthook and then dies: the hook, not a default traceback, must run."""

import os
import sys
import traceback


def hook(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
    frames = [f"{os.path.basename(f.filename)}:{f.lineno}" for f in traceback.extract_tb(tb)]
    print(f"custom excepthook: {exc_type.__name__}: {exc}", file=sys.stderr)
    print(f"custom excepthook frames: {frames}", file=sys.stderr)


sys.excepthook = hook


def main() -> None:
    raise ValueError("loss is nan")


main()
