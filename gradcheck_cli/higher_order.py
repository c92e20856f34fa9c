"""Higher-order autograd: ``torch.autograd.grad`` calls, the tensors they differentiate and the
gradients they return with ``create_graph=True``.

``torch.autograd.grad(outputs, inputs)`` *returns* the gradients of ``inputs``; it never writes
``.grad``. So its inputs — a WGAN-GP's ``interp``, MAML's fast weights, non-leaf or not — are
reached when the call's graph reaches them (a non-leaf by its ``grad_fn``), and a tensor that was
only ever such an input (no optimizer holds it) is not expected to get a gradient from a later
``backward()``. A gradient returned with ``create_graph=True`` is a differentiable tensor: a
penalty built from it trains the parameters its graph reached, unless a cut on the way to the loss
(``g.detach()`` in the penalty) removes it — that cut is reported at its line.

:class:`GradCalls` keeps what the checked ``autograd.grad`` calls did; the session asks it
whether the op tracker's cuts outlive such a call (they feed the ``backward()`` that follows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck_cli.findings import Raw
from gradcheck_cli.graph import Walk, walk_graph
from gradcheck_cli.naming import Names
from gradcheck_cli.sites import CallSite
from gradcheck_cli.tracking import Cut, IdTable, Tracker, grad_fn_of

GRAD_API = "torch.autograd.grad"
# Cuts are kept across autograd.grad calls (they feed the backward that follows); a loop that
# only ever calls autograd.grad still drops them after this many calls.
_MAX_GRAD_CALLS_KEPT = 32
_MAX_RETURNED = 64
# torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph, create_graph, only_inputs,
#                     allow_unused, is_grads_batched, materialize_grads)
_POSITION = {"create_graph": 4, "allow_unused": 6, "materialize_grads": 8}


def grad_option(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> bool:
    """The value of one keyword of a ``torch.autograd.grad`` call, given by name or position."""
    if name in kwargs:
        return bool(kwargs[name])
    i = _POSITION[name]
    return bool(args[i]) if len(args) > i else False


def unused_allowed(api: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """``allow_unused=True`` or ``materialize_grads=True``: the caller accepts inputs the outputs
    do not reach (None or zeros in the returned tuple)."""
    return api == GRAD_API and (
        grad_option(args, kwargs, "allow_unused") or grad_option(args, kwargs, "materialize_grads")
    )


def reached_inputs(inputs: list[torch.Tensor], walk: Walk) -> dict[int, torch.Tensor]:
    """The explicit inputs the call's graph reaches: a leaf through its AccumulateGrad node, a
    non-leaf through its own ``grad_fn`` (its gradient is returned, or kept by ``retain_grad``)."""
    found: dict[int, torch.Tensor] = {}
    for t in inputs:
        node = grad_fn_of(t)
        if id(t) in walk.leaves or (node is not None and id(node) in walk.nodes):
            found[id(t)] = t
    return found


@dataclass
class _Returned:
    """A gradient returned by ``autograd.grad(..., create_graph=True)``."""

    node: Any  # its grad_fn (kept alive while the record lives, so ids stay valid)
    where: CallSite | None
    trained: list[torch.Tensor]  # the leaves its graph reached, the call's inputs excluded


@dataclass
class GradCalls:
    """What the checked ``autograd.grad`` calls did: their inputs (for the whole run, held
    weakly) and their ``create_graph=True`` gradients (until the tracker's next new generation)."""

    inputs: IdTable = field(default_factory=IdTable)  # tensor -> True: an input of some call
    returned: list[_Returned] = field(default_factory=list)
    calls_kept: int = 0

    def record(
        self,
        inputs: list[torch.Tensor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        where: CallSite | None,
    ) -> None:
        for t in inputs:
            self.inputs.set(t, True)
        if not grad_option(args, kwargs, "create_graph") or len(self.returned) >= _MAX_RETURNED:
            return
        skip = {id(t) for t in inputs}
        for g in result if isinstance(result, (tuple, list)) else (result,):
            node = grad_fn_of(g) if isinstance(g, torch.Tensor) else None
            if node is None:
                continue
            # What the returned gradient depends on (a last layer's bias, often, it does not).
            trained = [t for k, t in walk_graph([node]).leaves.items() if k not in skip]
            if trained:
                self.returned.append(_Returned(node, where, trained))

    def keep_generation(self, api: str) -> bool:
        """Should the tracker's cuts outlive this checked call? After an ``autograd.grad`` call
        yes (the backward that uses its result comes later), up to a bound."""
        if api == GRAD_API and self.calls_kept < _MAX_GRAD_CALLS_KEPT:
            self.calls_kept += 1
            return True
        self.calls_kept = 0
        self.returned.clear()
        return False

    def only_inputs(self, names: Names, optimizer_groups: list[set[int]]) -> set[int]:
        """Named leaves that were inputs of ``autograd.grad`` and that no optimizer holds: they
        got their gradient from that call, and no later ``backward()`` is expected to reach them."""
        held: set[int] = set().union(*optimizer_groups) if optimizer_groups else set()
        return {
            key
            for key, (_, t) in names.leaves.items()
            if key not in held and self.inputs.get(t) is not None
        }

    def cut_penalties(self, loss_cuts: list[Cut], walk: Walk, names: Names) -> list[Raw]:
        """A cut between a ``create_graph=True`` gradient and this loss, when the loss reaches
        that gradient by no other path: the penalty built from it trains nothing."""
        if not self.returned or not loss_cuts:
            return []
        pending = [r for r in self.returned if id(r.node) not in walk.nodes]
        found: list[Raw] = []
        for cut in sorted(loss_cuts, key=lambda c: c.id):
            if not pending:
                break
            above = walk_graph(r for r in cut.roots.values() if not isinstance(r, torch.Tensor))
            hit = [r for r in pending if id(r.node) in above.nodes]
            if not hit:
                continue
            pending = [r for r in pending if r not in hit]
            trained = _names_of(hit, names)
            if trained:
                found.append(_penalty_raw(cut, hit[0], trained))
        return found


def _names_of(records: list[_Returned], names: Names) -> list[str]:
    out: list[str] = []
    for r in records:
        for t in r.trained:
            name = names.name_of(t)
            if name is not None and name not in out and t.requires_grad:
                out.append(name)
    return out


def _penalty_raw(cut: Cut, record: _Returned, trained: list[str]) -> Raw:
    from gradcheck_cli.diagnose import cut_message  # diagnose imports this module

    at = f" at line {record.where.site.line}" if record.where is not None else ""
    message = (
        f"{cut_message(cut)}: it cut the gradient returned by "
        f"`torch.autograd.grad(..., create_graph=True)`{at}, so the penalty built from it sends "
        "these parameters no gradient"
    )
    return Raw(cut.kind, cut.where, trained, message, grad_state="present")


def input_without_grad(
    inputs: list[torch.Tensor] | None,
    losses: list[torch.Tensor],
    names: Names,
    tracker: Tracker,
    call: CallSite | None,
) -> Raw | None:
    """``autograd.grad`` raised because an input does not require grad (a gradient penalty on
    ``interp`` made without ``requires_grad_``) while the outputs do: name the input, at the
    line that made it when the tracker saw it, else at the call."""
    if not inputs or not all(t.requires_grad for t in losses):
        return None
    frozen = [(i, t) for i, t in enumerate(inputs) if not t.requires_grad]
    if not frozen:
        return None
    labels = [names.name_of(t) or f"inputs[{i}]" for i, t in frozen]
    first = frozen[0][1]
    where = tracker.rg_off.get(first) or tracker.born.get(first) or call
    message = (
        "`torch.autograd.grad` was asked for the gradient of a tensor that does not require grad: "
        "call `.requires_grad_(True)` on it where it is made"
    )
    return Raw("requires_grad_false", where, labels, message, grad_state="raised")
