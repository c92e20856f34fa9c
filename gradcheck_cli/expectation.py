"""What a checked backward call leaves for the optimizer steps after it.

A parameter is expected at a backward when its loss reaches it, when its root model takes part
in the loss, or when an optimizer that holds it steps after this backward (before the next
one). The last rule can only be decided at ``step()``: a GAN's generator cut off from
``errG`` by ``netD(fake.detach())`` is a bug when ``optimizerG.step()`` follows, while the same
detach in the discriminator step (where ``optimizerD`` steps) is correct. The diagnosis hands
over such findings-in-waiting (:class:`~gradcheck_cli.diagnose.Deferred`); ``at_step`` turns
them into findings, and folds ``step_without_grad`` into the finding that already explains it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container
from typing import TYPE_CHECKING

import torch

from gradcheck_cli.findings import Raw
from gradcheck_cli.graph import NodesOf
from gradcheck_cli.rules import rule_for

if TYPE_CHECKING:
    from gradcheck_cli.diagnose import Deferred, Result
    from gradcheck_cli.graph import Walk
    from gradcheck_cli.naming import Names


class Expectations:
    def __init__(self) -> None:
        self.index = -1  # the last checked backward call
        self.deferred: list[Deferred] = []
        self.explained: set[int] = set()  # tensors a finding of that call already explains
        self.failing: set[str] = set()  # names in that call's error/warning findings
        # Graph nodes of the last checked backward: a value read from them afterwards (logging
        # ``loss.item()``) belongs to that step, not to the next loss.
        self.earlier_nodes: Container[int] = set()

    def after_backward(
        self, index: int, result: Result, walk: Walk | None, lazy: bool = False
    ) -> None:
        """``walk``: None for a check that did not walk its graph (nothing of it is kept);
        ``lazy``: a walk not made yet, made if a later check asks about this graph's nodes."""
        self.index = index
        self.deferred = result.deferred
        self.explained = result.explained
        self.failing = {
            n
            for raw in result.findings
            if (raw.severity or rule_for(raw.kind).severity) != "info"
            for n in raw.names
        }
        if walk is None:
            self.earlier_nodes = set()
        else:
            self.earlier_nodes = NodesOf(walk) if lazy else set(walk.nodes)

    def settle_earlier(self, asked: bool) -> None:
        """The tracker sleeps: decide the last graph's nodes now (walked if a cut recorded since
        its check may ask about them, else none), so that its graph is not held any longer."""
        if isinstance(self.earlier_nodes, NodesOf):
            self.earlier_nodes = self.earlier_nodes.ids() if asked else set()

    def at_step(
        self, optimizer: torch.optim.Optimizer, raws: list[Raw], names: Names
    ) -> list[tuple[Raw, int]]:
        """``step()``'s findings, each with the backward call it belongs to."""
        if not self.deferred and not raws:  # (the common case: nothing to decide)
            return []
        params = [p for g in optimizer.param_groups for p in g["params"]]
        missing = {id(p) for p in params if p.grad is None}
        found: list[tuple[Raw, int]] = []
        covered = set(self.explained)
        for d in self.deferred:
            hit = [name for key, name in d.ids.items() if key in missing]
            if hit:
                found.append((dataclasses.replace(d.raw, names=hit), self.index))
                covered |= set(d.ids)
        known = {n for p in params if id(p) in covered and (n := names.name_of(p)) is not None}
        known |= self.failing
        for raw in raws:
            # A step that updates nothing, or frozen tensors still decayed: consequences of a
            # freeze or cut the backward's finding already names at its line.
            if raw.kind in ("step_without_grad", "frozen_weight_decay") and known:
                if raw.kind == "frozen_weight_decay":
                    raw.names = [n for n in raw.names if n not in self.failing]
                else:
                    raw.names = [n for n in raw.names if n not in known]
                if not raw.names:
                    continue
            found.append((raw, self.index))
        return found
