"""``gradcheck init``: a commented gradcheck.yaml from what a script trains at its first backward."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from gradcheck_cli import __version__


def _group(qualified: str, root: str) -> str:
    """``model.encoder.0.weight`` -> ``model.encoder`` (the root's direct child), else the name."""
    rest = qualified[len(root) + 1 :]
    head = rest.split(".", 1)[0]
    return f"{root}.{head}" if "." in rest else qualified


def render_config(session: Any, command: str) -> str:
    """The YAML text: trained tensors under ``expect`` (grouped by module), frozen under ``frozen``."""
    names = session._names
    states: dict[str, str] = {}
    if session.steps:
        states = {c.name: c.state for c in session.steps[0].checked}
    expect: OrderedDict[str, list[str]] = OrderedDict()
    frozen: OrderedDict[str, list[str]] = OrderedDict()
    if names is not None:
        for root in names.roots:
            for pname, p in root.module.named_parameters():
                qual = f"{root.name}.{pname}"
                target = frozen if not p.requires_grad else expect
                target.setdefault(_group(qual, root.name), []).append(qual)
        for name, t in names.leaves.values():
            if t.is_leaf and t.requires_grad and name in states:
                expect.setdefault(name, []).append(name)
    lines = [
        f"# gradcheck.yaml — written by `gradcheck init {command}` (gradcheck {__version__}).",
        "# What must learn, checked at every backward(). Edit freely; `gradcheck schema config`",
        "# prints the JSON Schema (for editor completion).",
        "",
        "# Names or globs that must receive a non-zero gradient.",
        "expect:",
    ]
    lines += _entries(expect, states) or ["  []"]
    lines += ["", "# Must stay frozen: requires_grad=False and no gradient."]
    if frozen:
        lines += ["frozen:", *_entries(frozen, states)]
    else:
        lines += ["frozen: []"]
    lines += [
        "",
        "# Exceptions: may get no gradient / an all-zero gradient.",
        "allow_none: []",
        "allow_zero: []",
        "",
        "steps: 10             # backward calls to check: the first N, or all",
        "# stop_after: 1       # end the script after N checked backward calls (fast CI)",
        "zero_atol: 0.0        # max |g| that still counts as zero",
        "fail_on: error        # error | warning | never",
        "ignore: []            # finding kinds or rule ids, e.g. unused_parameter or GC120",
        "",
    ]
    return "\n".join(lines)


def _entries(groups: OrderedDict[str, list[str]], states: dict[str, str]) -> list[str]:
    out: list[str] = []
    for module, members in groups.items():
        bad = [m for m in members if states.get(m) in ("none", "zero")]
        note = f"  # {len(members)} tensors" if len(members) > 1 else ""
        if bad:
            note += f"  # {len(bad)} got no or a zero gradient at the first backward: run `gradcheck run`"
        pattern = f"{module}.*" if len(members) > 1 or module != members[0] else module
        out.append(f"  - {_quote(pattern)}{note}")
    return out


def _quote(name: str) -> str:
    # Brackets, a leading `*` and other flow characters would be YAML syntax: quote such names.
    special = any(c in name for c in "[]{}#&!|>'\"%@`,") or name.startswith("*") or ": " in name
    return "'" + name.replace("'", "''") + "'" if special else name
