"""Beyond backward(): parameters that get gradients but never learn.

Watches every optimizer (including user subclasses) through torch's global step pre-hook and
patches on ``Optimizer.__init__`` / ``zero_grad`` and ``Module.__setattr__`` (the latter only acts
once an optimizer exists, so model construction pays nothing). At each ``step()`` inside the check
window it asks: does every trained parameter belong to some optimizer; does this optimizer still
hold tensors of a layer that was replaced; were the gradients of the last backward wiped before
this step; does the step see any gradient at all; are frozen parameters still being decayed.
Findings are :class:`~gradcheck_cli.diagnose.Raw` like every other; torch-internal calls are never
blamed (sites are always the nearest user frame).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from gradcheck_cli.findings import Raw
from gradcheck_cli.naming import Names, structure_changed
from gradcheck_cli.sites import CallSite, capture


@dataclass
class Watched:
    ref: weakref.ref[torch.optim.Optimizer]
    where: CallSite | None


@dataclass
class Replacement:
    owner: nn.Module
    attr: str
    old: Any
    new: Any
    where: CallSite


# Values whose assignment to a module attribute can change what its tree holds.
_STRUCTURAL = (nn.Module, torch.Tensor, list, tuple, dict)


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, nn.Module):
        return list(x.parameters())
    return [x] if isinstance(x, torch.Tensor) else []


class OptimizerWatch:
    """State between backward() and step(); produces findings at each step()."""

    def __init__(self) -> None:
        self.optimizers: list[Watched] = []
        self.replacements: list[Replacement] = []
        self.had_grad: set[int] = set()  # parameters with a gradient right after the last backward
        self.wipe: CallSite | None = None  # zero_grad() / p.grad = None after that backward
        self.backward_since_step = False

    # -- events ----------------------------------------------------------------------------------

    def created(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizers = [w for w in self.optimizers if w.ref() is not None]
        self.optimizers.append(Watched(weakref.ref(optimizer), capture()))

    def live(self) -> list[Watched]:
        return [w for w in self.optimizers if w.ref() is not None]

    def holds(self, t: torch.Tensor) -> bool:
        """Does a live optimizer hold tensor ``t``?"""
        for w in self.live():
            opt = w.ref()
            if opt is not None and any(p is t for g in opt.param_groups for p in g["params"]):
                return True
        return False

    def after_backward(self, leaves: dict[int, torch.Tensor]) -> None:
        self.had_grad = {k for k, t in leaves.items() if t.grad is not None}
        self.wipe = None
        self.backward_since_step = True

    def wiped(self) -> None:
        """zero_grad() or ``p.grad = None`` by user code after a backward."""
        if self.backward_since_step and self.wipe is None:
            self.wipe = capture()

    def replaced(self, owner: nn.Module, attr: str, old: Any, new: Any) -> None:
        where = capture()
        if where is not None and len(self.replacements) < 64:
            self.replacements.append(Replacement(owner, attr, old, new, where))

    # -- the check at step() ---------------------------------------------------------------------

    def check_step(
        self,
        optimizer: torch.optim.Optimizer,
        names: Names,
        rg_off: Any = None,
        closure: bool = False,
    ) -> list[Raw]:
        """What ``step()`` is about to do wrong. With a closure (LBFGS) the gradients are made
        inside the step, so only the frozen-with-weight-decay check applies."""
        found: list[Raw] = []
        params = [p for g in optimizer.param_groups for p in g["params"]]
        name = names.name_of
        present = [p for p in params if p.grad is not None]
        trained = [p for p in params if id(p) in self.had_grad]
        # zero_grad(set_to_none=False) leaves zeros: "freshly zeroed" counts as wiped too.
        usable = (
            [p for p in present if bool(p.grad.detach().any())]
            if self.wipe is not None
            else present
        )
        if not closure:
            if self.wipe is not None and trained and not usable:
                found.append(
                    Raw(
                        "grad_wiped",
                        self.wipe,
                        [name(p) or "?" for p in trained],
                        "the gradients of the last backward() were cleared here before optimizer.step() could use them",
                    )
                )
            elif not present and params:
                found.append(
                    Raw(
                        "step_without_grad",
                        capture(),
                        [n for n in (name(p) for p in params) if n],
                        "optimizer.step() found no gradient on any of its parameters: this update does nothing",
                    )
                )
        frozen: list[torch.Tensor] = []
        for group in optimizer.param_groups:
            if group.get("weight_decay", 0) and group.get("lr", 1):
                frozen += [p for p in group["params"] if not p.requires_grad and p.grad is not None]
        if frozen:
            # Point at the freeze: that is the line that made these tensors "frozen" while kept here.
            freeze = (
                next((f for f in (rg_off.get(p) for p in frozen) if f is not None), None)
                if rg_off
                else None
            )
            found.append(
                Raw(
                    "frozen_weight_decay",
                    freeze or capture(),
                    [n for n in (name(p) for p in frozen) if n],
                    "these parameters no longer require grad, but still have a .grad tensor, so the optimizer "
                    "keeps applying weight decay (and momentum) to them: the frozen weights still change",
                    grad_state="present",
                )
            )
        if self.backward_since_step:
            found += self._coverage(names)
            self.backward_since_step = False
        return found

    def _coverage(self, names: Names) -> list[Raw]:
        """Trained parameters no optimizer holds: a replaced layer, or one never added."""
        live = self.live()
        if not live:
            return []
        held: set[int] = set()
        for w in live:
            opt = w.ref()
            if opt is not None:
                held |= {id(p) for g in opt.param_groups for p in g["params"]}
        orphans = [
            (key, qual)
            for key, qual in names.param_name.items()
            if key not in held and key in self.had_grad and names.params[key].requires_grad
        ]
        if not orphans:
            return []
        found: dict[Any, Raw] = {}
        for key, qual in orphans:
            rep = next(
                (r for r in self.replacements if any(id(t) == key for t in _tensors(r.new))), None
            )
            if rep is not None:
                old_held = [t for t in _tensors(rep.old) if id(t) in held]
                owner = names.module_name(rep.owner) or type(rep.owner).__name__
                raw = found.get(id(rep))
                if raw is None:
                    raw = found[id(rep)] = Raw(
                        "stale_optimizer",
                        rep.where,
                        [],
                        f"`{owner}.{rep.attr}` was replaced after the optimizer was built: the optimizer "
                        f"still holds the old {_describe(rep.old)} ({len(old_held)} tensors, with their optimizer state) "
                        f"and the new {_describe(rep.new)} is in no optimizer",
                        grad_state="present",
                    )
                raw.names.append(qual)
                continue
            opt_site = live[0].where
            module = qual.rsplit(".", 1)[0]
            raw = found.get(("missing", module))
            if raw is None:
                raw = found[("missing", module)] = Raw(
                    "param_not_in_optimizer",
                    opt_site,
                    [],
                    f"`{module}` receives gradients but is in no optimizer's param groups: it never learns",
                    grad_state="present",
                )
            raw.names.append(qual)
        return list(found.values())


def _describe(x: Any) -> str:
    if isinstance(x, nn.Module):
        return repr(x) if len(repr(x)) < 60 else type(x).__name__
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}"
    return type(x).__name__


def install(
    watch: OptimizerWatch,
    patches: Any,
    on_step: Callable[[torch.optim.Optimizer, Any], Any],
    on_step_done: Callable[[], None],
    mode_off: Callable[[], AbstractContextManager[None]],
) -> None:
    """Optimizer construction/zero_grad/step hooks and the layer-replacement patch.

    ``on_step(optimizer, closure)`` runs before every ``step()`` and may return a closure to call
    in place of the user's; ``on_step_done()`` runs after it.
    """
    import functools

    orig_init = torch.optim.Optimizer.__init__

    @functools.wraps(orig_init)
    def optimizer_init(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        watch.created(self)

    orig_zero_grad = torch.optim.Optimizer.zero_grad

    @functools.wraps(orig_zero_grad)
    def zero_grad(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> None:
        watch.wiped()
        with mode_off():  # torch's own loop over the parameters: nothing to see there
            return orig_zero_grad(self, *args, **kwargs)

    orig_setattr = nn.Module.__setattr__

    @functools.wraps(orig_setattr)
    def module_setattr(self: nn.Module, name: str, value: Any) -> None:
        if name != "training" and isinstance(value, _STRUCTURAL):
            structure_changed()
        if watch.optimizers and isinstance(value, (nn.Module, torch.Tensor)):
            d = self.__dict__
            old = d.get("_modules", {}).get(name) or d.get("_parameters", {}).get(name)
            if old is not None and old is not value:
                watch.replaced(self, name, old, value)
        orig_setattr(self, name, value)

    patches.patch(torch.optim.Optimizer, "__init__", optimizer_init)
    patches.patch(torch.optim.Optimizer, "zero_grad", zero_grad)
    patches.patch(nn.Module, "__setattr__", module_setattr)

    def step_pre_hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        # ``args`` starts with the optimizer itself (torch passes the bound call's arguments).
        closure = args[1] if len(args) > 1 else kwargs.get("closure")
        wrapped = on_step(optimizer, closure)
        if wrapped is None or closure is None:
            return None
        if len(args) > 1:
            return (args[0], wrapped, *args[2:]), kwargs
        return args, {**kwargs, "closure": wrapped}

    def step_post_hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        on_step_done()

    patches.add_handle(register_optimizer_step_pre_hook(step_pre_hook))
    patches.add_handle(register_optimizer_step_post_hook(step_post_hook))
