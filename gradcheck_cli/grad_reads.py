"""After the run: the user read ``.grad`` and got None — say why, when the tracker knows.

A non-leaf is named by what the user called it where it was made (``W = torch.randn(...,
requires_grad=True).to(device)`` names ``W``), whatever alias the ``.grad`` read went through
(``for name, p in params.items(): p.grad``, a tuple, a function argument).
"""

from __future__ import annotations

import ast
import re
import sys
from typing import Any

from gradcheck_cli.findings import FindingBook, Raw
from gradcheck_cli.naming import Names
from gradcheck_cli.sites import CallSite
from gradcheck_cli.tracking import Tracker

# A `.grad` read that only tests for None is not a sign the user expected a gradient there.
_NONE_TEST = re.compile(
    r"\.grad\s+is\s+(not\s+)?None|\.grad\s*(==|!=)\s*None|if\s+[\w.\[\]]+\.grad\s*(:|and|or)"
)


def explain_grad_reads(tracker: Tracker, names: Names | None, book: FindingBook) -> None:
    reads = tracker.grad_reads
    seen: set[int] = set()
    for t, where, variable in reads:
        made = tracker.made_from.get(t) if t.grad_fn is not None else None
        # A None test on a leaf is a guard; on a non-leaf made from the user's own leaf it is
        # the bug itself (the guard is always true, and the update never happens).
        if id(t) in seen or (made is None and _NONE_TEST.search(where.site.code)):
            continue
        seen.add(id(t))
        name = (
            (names.name_of(t) if names else None)
            or (made is not None and _assigned_name(made, t))
            or _main_global(t)
            or variable
            or f"<tensor {tuple(t.shape)}>"
        )
        if not t.requires_grad:
            off = tracker.rg_off.get(t)
            frozen = [name]
            if off is not None and names is not None:
                # Everything the same line froze is part of the same finding.
                frozen += [
                    n
                    for key, n in names.param_name.items()
                    if n != name and tracker.rg_off.get(names.tensor(key)) is off
                ]
            message = (
                f"`.grad` was read at {where.site.display} but the tensor does not require grad"
            )
            site = off or tracker.born.get(t) or where
            book.add(Raw("requires_grad_false", site, frozen, message), -1)
        elif t.grad_fn is not None:
            if any(f.kind == "non_leaf" and name in f.parameters for f in book.values()):
                continue  # the backward check already said so (an expected non-leaf)
            alias = f" (as `{variable}`)" if variable and variable != name else ""
            message = (
                f"`.grad` of `{name}` was read{alias} at {where.site.display}, but `{name}` is "
                "not a leaf: it was made from a tensor that requires grad, and its gradient goes "
                "to that tensor, so its own `.grad` stays None"
            )
            book.add(Raw("non_leaf", made or where, [name], message), -1)
    reads.clear()


def _assigned_name(made: CallSite, t: Any) -> str | None:
    """The name the line that made ``t`` assigned it to (``W = ...``), if it is a plain name."""
    try:
        tree = ast.parse(made.site.code.strip())
    except SyntaxError:
        return None
    stmt = tree.body[0] if tree.body else None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
    elif isinstance(stmt, ast.AnnAssign):
        target = stmt.target
    else:
        return None
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        return target.attr if target.value.id == "self" else f"{target.value.id}.{target.attr}"
    return None


def _main_global(t: Any) -> str | None:
    main = sys.modules.get("__main__")
    for name, value in list(vars(main).items()) if main is not None else ():
        if value is t and not name.startswith("_"):
            return name
    return None
