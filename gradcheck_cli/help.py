"""``--help`` laid out as ruff's and pytest's are: a real usage line, options in sections.

Typer's plain (non-rich) help lists every option in one block and shows an optional argument as
``[script]``; the script is required (unless ``-m``), so the usage line says so.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand

# Option (parameter name) -> section; the config keys' and report files' options say their own
# (run_options.section); the others go under "Other options".
SECTIONS: dict[str, str] = {
    "module": "What to run",
    "nproc_per_node": "What to run",
    "config_path": "Configuration (wins over the config file)",
    "output_format": "Reports",
    "quiet": "Reports",
    "verbose": "Reports",
    "no_color": "Reports",
    "exit_zero": "Reports",
    "output": "Output",
    "force": "Output",
}


def _section(name: str) -> str:
    from gradcheck_cli.run_options import section

    return SECTIONS.get(name) or section(name) or "Other options"


class SectionedCommand(TyperCommand):
    """A command whose usage names the script as required and whose options come in sections."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return ["[OPTIONS]", "SCRIPT [ARGS]...", "|", "-m MODULE [ARGS]..."]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments = [
            (p.metavar or p.name or "", p.help or "")
            for p in self.get_params(ctx)
            if isinstance(p, TyperArgument)
        ]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl([*arguments, ("ARGS...", "Passed to the script untouched.")])
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = None if isinstance(param, TyperArgument) else param.get_help_record(ctx)
            if record is not None:
                title = _section(param.name or "")
                sections.setdefault(title, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)
