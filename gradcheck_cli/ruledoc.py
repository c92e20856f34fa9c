"""The documentation of each finding kind (``gradcheck rule``, SARIF's ``help``); no torch here.

The text lives in package data, one Markdown file per kind (``rule_docs/<kind>.md``, with the
sections Triggers / Example / Why it matters / Fix / Allow). The heading — id, kind, title,
severity — comes from :data:`gradcheck_cli.rules.RULES`, the one registry of kinds.
"""

from __future__ import annotations

import difflib
from importlib import resources

from gradcheck_cli.rules import RULES, Rule

SECTIONS = ("Triggers", "Example", "Why it matters", "Fix", "Allow")
# The Fix section is the registry's hint, the same text a finding's "fix:" line shows.
_HINT_SLOT = "<!-- the rule's hint from rules.py goes here -->"


def find_rule(name: str) -> Rule | None:
    """The rule for a kind (``detach``) or an id (``GC101``, any case)."""
    rule = RULES.get(name.strip().lower())
    if rule is not None:
        return rule
    wanted = name.strip().upper()
    return next((r for r in RULES.values() if r.id == wanted), None)


def suggest(name: str) -> list[str]:
    """Kinds and ids close to a mistyped ``name``."""
    known = [*RULES, *(r.id for r in RULES.values())]
    return difflib.get_close_matches(name.strip().lower(), known, n=3) or difflib.get_close_matches(
        name.strip().upper(), known, n=3
    )


def body(kind: str) -> str:
    """The Markdown sections of ``kind``'s documentation (without the heading)."""
    return resources.files("gradcheck_cli").joinpath("rule_docs", f"{kind}.md").read_text("utf-8")


def heading(rule: Rule) -> str:
    return f"{rule.id} {rule.kind}: {rule.title} (default severity: {rule.severity})"


def rule_doc(kind: str) -> str:
    """The full documentation of ``kind`` as Markdown: a heading from the registry, then the text."""
    rule = RULES[kind]
    text = body(kind).replace(_HINT_SLOT, rule.hint)
    return f"# {heading(rule)}\n\n{text}"


def print_rule(name: str | None, *, no_color: bool = False) -> None:
    """``gradcheck rule [NAME]``: the doc of one kind, or the table of all kinds, on stdout.

    Rendered Markdown on a terminal; the Markdown itself when piped (to paste or grep).
    """
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from gradcheck_cli.errors import CommandError

    console = Console(no_color=no_color, highlight=False, soft_wrap=True)
    if name is None:
        table = Table("id", "kind", "severity", "title", box=None, pad_edge=False)
        for r in sorted(RULES.values(), key=lambda r: r.id):
            table.add_row(r.id, r.kind, r.severity, r.title)
        console.print(table)
        console.print("\nDetails: gradcheck rule KIND (or ID), e.g. gradcheck rule detach")
        return
    rule = find_rule(name)
    if rule is None:
        close = suggest(name)
        hint = f"did you mean {', '.join(close)}?" if close else "see `gradcheck rule` for the list"
        raise CommandError(f"unknown rule {name!r} ({hint})")
    text = rule_doc(rule.kind)
    if console.is_terminal:
        console.print(Markdown(text))
    else:
        console.file.write(text)
