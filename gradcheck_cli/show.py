"""``gradcheck show REPORT.json``: re-render a saved report without torch (terminal and HTML)."""

from __future__ import annotations

import json

from gradcheck_cli.errors import CommandError
from gradcheck_cli.report import load_json, make_console, render_console, write_atomic


def show_report(
    path: str, html_path: str | None, quiet: bool, verbose: bool, no_color: bool
) -> int:
    """Print the report as ``run`` did; return the exit status ``run`` gave for it."""
    try:
        report = load_json(path)
    except FileNotFoundError:
        raise CommandError(f"no such report: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise CommandError(f"{path} is not JSON ({e})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CommandError(f"{path} is not a gradcheck report ({e})") from None
    if html_path:
        from gradcheck_cli.reporters import FILE_REPORTERS

        write_atomic(html_path, FILE_REPORTERS["html"].render(report))
    render_console(report, make_console(no_color=no_color), verbose=verbose, quiet=quiet)
    return report.exit_status
