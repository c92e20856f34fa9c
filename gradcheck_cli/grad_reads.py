"""After the run: the user read ``.grad`` and got None — say why, when the tracker knows."""

from __future__ import annotations

import re

from gradcheck_cli.findings import FindingBook, Raw
from gradcheck_cli.naming import Names
from gradcheck_cli.tracking import Tracker

# A `.grad` read that only tests for None is not a sign the user expected a gradient there.
_NONE_TEST = re.compile(
    r"\.grad\s+is\s+(not\s+)?None|\.grad\s*(==|!=)\s*None|if\s+[\w.\[\]]+\.grad\s*(:|and|or)"
)


def explain_grad_reads(tracker: Tracker, names: Names | None, book: FindingBook) -> None:
    reads = tracker.grad_reads
    seen: set[int] = set()
    for t, where, variable in reads:
        if id(t) in seen or _NONE_TEST.search(where.site.code):
            continue
        seen.add(id(t))
        name = (names.name_of(t) if names else None) or variable or f"<tensor {tuple(t.shape)}>"
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
            message = (
                f"`.grad` was read at {where.site.display}, but the tensor is not a leaf: "
                "its gradient goes to the tensor it was made from"
            )
            book.add(Raw("non_leaf", tracker.made_from.get(t) or where, [name], message), -1)
    reads.clear()
