"""The autograd graph as gradcheck reads it: the walk from a loss, the leaves it reaches, and the
user line stamped on a node (no findings here).

Read by the check of a backward call (session), the diagnosis, the zero-gradient probe; written
(stamps) by the op tracker.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck_cli.sites import Site

# Key under which the op tracker keeps (user site, module) in an autograd node's ``metadata``.
STAMP_KEY = "gradcheck_site"

# The autograd node that accumulates into a leaf's ``.grad`` (not exported by torch).
ACCUMULATE_GRAD: type = type(
    torch.empty(1, requires_grad=True).expand(1).grad_fn.next_functions[0][0]
)


@dataclass
class Walk:
    """What a backward from the loss reaches: leaves (by id), their AccumulateGrad nodes (by the
    leaf's id) and every node visited."""

    leaves: dict[int, torch.Tensor] = field(default_factory=dict)
    nodes: dict[int, Any] = field(default_factory=dict)
    acc: dict[int, Any] = field(default_factory=dict)
    complete = True  # (a MarkedWalk is not, until something asks for its nodes)

    def see_through(self, alias: dict[int, torch.Tensor]) -> Walk:
        """Key stand-in leaves (FSDP2's unsharded parameters) by the user's tensors instead."""
        for key in [k for k in self.leaves if k in alias]:
            user = alias[key]
            del self.leaves[key]
            self.leaves[id(user)] = user
            self.acc[id(user)] = self.acc.pop(key)
        return self


class MarkedWalk(Walk):
    """The walk of a check made while the op tracker slept, which repeats a step already walked:
    what the backward reached is read from the named tensors' ``.grad`` marks (:meth:`mark`
    before autograd runs, :meth:`settle` after), and the graph is walked only if something asks
    for its nodes (a layer's dead units seen for the first time, a lost gradient)."""

    def __init__(self, starts: list[Any], tensors: dict[int, torch.Tensor]) -> None:
        self.leaves = {}
        self._starts = starts
        self._tensors = tensors
        self._marks = {
            key: None if t.grad is None else (id(t.grad), t.grad._version)
            for key, t in tensors.items()
        }
        self._full: Walk | None = None

    def settle(self) -> None:
        """Autograd has run: a tensor whose gradient appeared or changed was reached."""
        marks = self._marks
        for key, t in self._tensors.items():
            g = t.grad
            if g is not None and (id(g), g._version) != marks[key]:
                self.leaves[key] = t

    @property  # type: ignore[override]
    def complete(self) -> bool:  # type: ignore[override]
        return self._full is not None

    @property  # type: ignore[override]
    def nodes(self) -> dict[int, Any]:  # type: ignore[override]
        return self._walked().nodes

    @property  # type: ignore[override]
    def acc(self) -> dict[int, Any]:  # type: ignore[override]
        return self._walked().acc

    def _walked(self) -> Walk:
        if self._full is None:
            self._full = walk_graph(self._starts)
        return self._full

    def walk_now(self) -> dict[int, torch.Tensor]:
        """Take what a walk of the graph reaches as reached instead of the marks (after autograd
        ran the graph is the same: it frees what nodes saved, not the edges between them).
        Returns the tensors the marks counted that the walk does not reach."""
        marked, self.leaves = self.leaves, dict(self._walked().leaves)
        return {k: t for k, t in marked.items() if k not in self.leaves}


class NodesOf(Container[int]):
    """The ids of a graph's nodes, walked on the first question (most never get one)."""

    def __init__(self, walk: Walk) -> None:
        self._walk: Walk | None = walk
        self._ids: set[int] = set()

    def __contains__(self, key: object) -> bool:
        return key in self.ids()

    def ids(self) -> set[int]:
        if self._walk is not None:
            self._ids, self._walk = set(self._walk.nodes), None
        return self._ids


def walk_graph(starts: Iterable[Any]) -> Walk:
    """Iterative walk over ``next_functions``; ``AccumulateGrad.variable`` is a reached leaf.

    The hot loop of a check on a big graph: a type test, not ``getattr(node, "variable", None)``,
    whose miss raises and catches an AttributeError on every node (3x slower on 100k nodes).
    """
    walk = Walk()
    stack = [n for n in starts if n is not None]
    nodes, leaves, acc = walk.nodes, walk.leaves, walk.acc
    pop, push, acc_type, id_ = stack.pop, stack.append, ACCUMULATE_GRAD, id
    while stack:
        node = pop()
        key = id_(node)
        if key in nodes:
            continue
        nodes[key] = node
        if type(node) is acc_type:
            variable = node.variable
            leaves[id_(variable)] = variable
            acc[id_(variable)] = node
            continue
        for nxt, _ in node.next_functions:
            if nxt is not None and id_(nxt) not in nodes:
                push(nxt)
    return walk


def leaves_under(
    roots: Iterable[Any], alias: dict[int, torch.Tensor] | None = None
) -> dict[int, torch.Tensor]:
    """Leaves reachable from cut roots (a root is a grad_fn node or a leaf tensor itself), stand-ins
    in ``alias`` (:attr:`gradcheck_cli.naming.Names.alias`) given as the user's tensors."""
    starts = []
    found: dict[int, torch.Tensor] = {}
    for r in roots:
        if isinstance(r, torch.Tensor):
            found[id(r)] = r
        else:
            starts.append(r)
    found.update(walk_graph(starts).leaves)
    if alias:
        found = {id(alias.get(k, t)): alias.get(k, t) for k, t in found.items()}
    return found


def stamp_of(node: Any) -> tuple[Site | None, Any]:
    try:
        meta = node.metadata
    except Exception:
        return None, None
    return meta.get(STAMP_KEY, (None, None))
