"""``python -m gradcheck_cli`` does what the ``gradcheck`` command does."""

from __future__ import annotations

from gradcheck_cli.cli import main

if __name__ == "__main__":
    main()
