"""The compact cut path of a finding (report format 1.1): the few nodes that explain it.

For a gradient cut: the cut itself (``.detach()`` at file:line; for a round trip, the escape it
came back from), then the autograd nodes that would have carried the gradient from the cut to
the parameter, long chains collapsed. For an all-zero gradient: the op where it died. The loss
end and the parameters are added by the renderers from the step and the finding, so a grouped
finding's path never goes stale as parameters join it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import torch

from gradcheck_cli import model as m
from gradcheck_cli.findings import model_site
from gradcheck_cli.sites import CallSite, Site
from gradcheck_cli.tracking import Cut

_MAX_NODES = 4  # autograd nodes shown behind a cut: the first ones and the last, the rest collapsed
_MAX_VISIT = 5000  # a cut of a huge graph: stop looking for the parameter's chain


def _site(where: CallSite | Site | None) -> m.Site | None:
    return model_site(where)


def _chain(
    roots: list[Any], param: torch.Tensor, alias: dict[int, torch.Tensor] | None = None
) -> list[str]:
    """Node names from a cut root down to ``param``'s AccumulateGrad (breadth first, bounded);
    ``alias``: the graph's stand-ins for the user's tensors (FSDP2's unsharded parameters)."""
    alias = alias or {}
    parent: dict[int, tuple[Any, int | None]] = {}
    queue: deque[Any] = deque()
    for r in roots:
        if isinstance(r, torch.Tensor):
            if r is param:
                return []
            continue
        parent.setdefault(id(r), (r, None))
        queue.append(r)
    while queue and len(parent) < _MAX_VISIT:
        node = queue.popleft()
        variable = getattr(node, "variable", None)
        if variable is not None and alias.get(id(variable), variable) is param:
            names: list[str] = []
            key: int | None = id(node)
            while key is not None:
                n, key = parent[key]
                names.append(type(n).__name__)
            return names[::-1][:-1]  # the AccumulateGrad itself: the parameter ends the path
        for nxt, _ in node.next_functions:
            if nxt is not None and id(nxt) not in parent:
                parent[id(nxt)] = (nxt, id(node))
                queue.append(nxt)
    return []


def _collapse(names: list[str]) -> list[m.PathNode]:
    if len(names) <= _MAX_NODES + 1:  # collapsing one node would not save a line
        return [m.PathNode("node", n) for n in names]
    head, tail = names[: _MAX_NODES - 1], names[-1]
    left = len(names) - len(head) - 1
    return [
        *(m.PathNode("node", n) for n in head),
        m.PathNode("collapsed", f"{left} more node{'s' if left != 1 else ''}"),
        m.PathNode("node", tail),
    ]


def cut_path(
    cut: Cut, param: torch.Tensor, alias: dict[int, torch.Tensor] | None = None
) -> list[m.PathNode]:
    """The cut, the escape it came back from (round trips), and the chain behind it."""
    nodes = [m.PathNode("cut", f"{cut.kind}: {cut.op}", _site(cut.where))]
    if cut.origin is not None:
        nodes.append(m.PathNode("cut", f"left the graph: {cut.origin.op}", _site(cut.origin.where)))
    with contextlib.suppress(RuntimeError, AttributeError):  # a freed graph: the cut suffices
        nodes += _collapse(_chain(list(cut.roots.values()), param, alias))
    return nodes


def zero_path(
    node_name: str, where: CallSite | Site | None, module: str | None
) -> list[m.PathNode]:
    """The op where an all-zero gradient died (``ReluBackward0`` in ``model.act``)."""
    label = f"{node_name} in {module}" if module else node_name
    return [m.PathNode("op", label, _site(where))]
