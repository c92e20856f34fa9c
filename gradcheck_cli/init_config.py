"""``gradcheck init``: a commented gradcheck.yaml from what a script trains at its first backward."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from gradcheck_cli import __version__
from gradcheck_cli.config import OPTIONS
from gradcheck_cli.options import template_lines

# The keys render_config fills from the run; the template lists the others with their defaults.
WRITTEN_HERE = ("script", "expect", "frozen")


def _group(qualified: str, root: str) -> str:
    """``model.encoder.0.weight`` -> ``model.encoder`` (the root's direct child), else the name."""
    rest = qualified[len(root) + 1 :]
    head = rest.split(".", 1)[0]
    return f"{root}.{head}" if "." in rest else qualified


def _suspect_freezes(session: Any) -> dict[str, str]:
    """Tensor name -> why its freeze looks like a bug: gradcheck reported where the run froze it
    (``requires_grad_false``) and an optimizer was given it, so it was meant to train."""
    held = {
        id(p)
        for opt in (w.ref() for w in session.optim.live())
        if opt is not None
        for group in opt.param_groups
        for p in group["params"]
    }
    from gradcheck_cli.name_patterns import named_tensors  # imports torch

    tensors = named_tensors(session._names) if session._names is not None else {}
    reasons: dict[str, str] = {}
    for f in session.findings:
        if f.kind != "requires_grad_false":
            continue
        where = f" at {f.site.display}" if f.site is not None else ""
        code = f" (`{f.site.code}`)" if f.site is not None and f.site.code else ""
        for name in f.parameters:
            if name in tensors and id(tensors[name]) in held:
                reasons.setdefault(
                    name, f"the run froze it{where}{code} but an optimizer was given it"
                )
    return reasons


def render_config(session: Any, command: str, script: str) -> str:
    """The YAML text: trained tensors under ``expect`` (grouped by module), frozen under ``frozen``
    — a freeze gradcheck reported as a possible bug is written commented out, with the reason."""
    names = session._names
    states: dict[str, str] = {}
    if session.steps:
        states = {c.name: c.state for c in session.steps[0].checked}
    allow_none, offered = _allow_none(session)
    for name in offered:  # offered below: not a problem to point out in `expect`
        states.pop(name, None)
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
        "# The script this file was made for: found as ./gradcheck.yaml by another script, names",
        "# below that match nothing there are warnings, not errors.",
        f"script: {_quote(script)}",
        "",
        "# Names or globs that must receive a non-zero gradient.",
        "expect:",
    ]
    lines += _entries(expect, states) or ["  []"]
    lines += ["", "# Must stay frozen: requires_grad=False and no gradient."]
    suspects = _suspect_freezes(session)
    kept = OrderedDict((k, v) for k, v in frozen.items() if not any(m in suspects for m in v))
    doubtful = OrderedDict((k, v) for k, v in frozen.items() if k not in kept)
    lines += ["frozen:", *_entries(kept, states)] if kept else ["frozen: []"]
    for module, members in doubtful.items():
        reason = next(suspects[m] for m in members if m in suspects)
        [entry] = _entries(OrderedDict([(module, members)]), {})  # frozen: no gradient expected
        lines += [
            f"  # NOT LISTED: {reason}; uncomment if the freeze is intended:",
            f"  #{entry[1:]}",
        ]
    if offered:  # library parts the loss never uses (a pooler): by design, offered here
        lines += [
            "",
            "# May get no gradient: parts of a library model the loss never uses.",
            *allow_none,
        ]
    skip = (*WRITTEN_HERE, "allow_none") if offered else WRITTEN_HERE
    # Every other key with its default and comment, from the Config fields (config.py).
    lines += ["", *template_lines(OPTIONS, skip=skip), ""]
    return "\n".join(lines)


def _allow_none(session: Any) -> tuple[list[str], list[str]]:
    """``allow_none``, offering the parts of a library model that the loss never used (a pooler
    under a token-classification head): gradcheck warns about them, and they are by design."""
    from gradcheck_cli.rules import is_library_part

    parts: OrderedDict[str, list[str]] = OrderedDict()
    for f in session.findings:
        if is_library_part(f.kind, f.message):
            for name in f.parameters:
                parts.setdefault(name.rsplit(".", 1)[0], []).append(name)
    if not parts:
        return ["allow_none: []"], []
    lines = [
        "allow_none:",
        "  # parts of a library model that the loss never used (remove to be warned):",
    ]
    for module, members in parts.items():
        pattern = f"{module}.*" if len(members) > 1 else members[0]
        note = f"  # {len(members)} tensors" if len(members) > 1 else ""
        lines.append(f"  - {_quote(pattern)}{note}")
    return lines, [name for members in parts.values() for name in members]


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


def summary_lines(text: str) -> list[str]:
    """What ``init`` wrote, for the terminal: the script, every entry, every commented-out one."""
    out: list[str] = []
    for line in text.splitlines():
        shown = ("script:", "expect:", "frozen:", "  - ", "  # NOT LISTED", "  # - ")
        if line.startswith(shown) or (
            line.startswith("allow_none:") and line.split("#")[0].strip() != "allow_none: []"
        ):
            out.append(line)
    return out
