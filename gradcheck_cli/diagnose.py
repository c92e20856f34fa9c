"""Diagnosis of one backward: which expected tensors got no gradient, and why (pure; never prints).

Data in — the loss, the leaves its graph reaches, the cuts that fed it, the names of what the user
trains, which modules ran — findings out. The expected set of a backward:

* every requires-grad parameter of each root module with at least one parameter in this loss's
  graph (including submodules that never ran); frozen ones are listed, not reported;
* parameters cut off from this loss (upstream of a cut that fed it) when their root shares an
  optimizer with a parameter in the graph, or when nothing trainable is in the graph at all — a
  GAN's ``G(z).detach()`` in the discriminator step or a target network under ``no_grad`` are not
  expected, an encoder in the same optimizer is;
* plain leaf tensors named in the calling scope that are in the graph or cut off from it;
* for ``autograd.grad`` / ``backward(inputs=...)``: exactly the inputs given.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.cutpath import cut_path
from gradcheck_cli.findings import Raw, group_key
from gradcheck_cli.graph import Walk, leaves_under
from gradcheck_cli.higher_order import reached_inputs
from gradcheck_cli.naming import Names, attribute_site
from gradcheck_cli.rules import KINDS
from gradcheck_cli.sites import CallSite, Site, is_user_file
from gradcheck_cli.tracking import Cut, Tracker


@dataclass
class Context:
    api: str
    losses: list[torch.Tensor]
    walk: Walk
    names: Names
    loss_cuts: list[Cut]
    tracker: Tracker
    ran_modules: set[int]
    optimizer_groups: list[set[int]]
    explicit_inputs: list[torch.Tensor] | None = None
    allow_unused: bool = False  # autograd.grad(allow_unused=True): unreached inputs are fine
    only_grad_inputs: set[int] = field(default_factory=set)  # leaves autograd.grad differentiated
    expect_ids: set[int] = field(default_factory=set)  # tensors the config says must learn


@dataclass
class Result:
    findings: list[Raw] = field(default_factory=list)
    checked: list[tuple[str, str, torch.Tensor | None]] = field(
        default_factory=list
    )  # (name, state, tensor)


def diagnose(ctx: Context) -> Result:
    res = Result()
    reached = ctx.walk.leaves
    # Which parameters did each cut that fed this loss starve? The earliest cut wins.
    cut_of: dict[int, Cut] = {}
    for cut in sorted(ctx.loss_cuts, key=lambda c: c.id):
        for key in leaves_under(cut.roots.values()):
            cut_of.setdefault(key, cut)
    frozen: dict[Site, Raw] = {}  # frozen parameters, by the line that froze them (information)
    if ctx.explicit_inputs is not None:
        reached = {**reached, **reached_inputs(ctx.explicit_inputs, ctx.walk)}
        expected = {
            id(t): (ctx.names.name_of(t) or f"inputs[{i}]", t)
            for i, t in enumerate(ctx.explicit_inputs)
            # allow_unused: an input the outputs do not reach is fine, unless a cut explains it
            if id(t) in reached or id(t) in cut_of or not ctx.allow_unused
        }
    else:
        expected = _expected(ctx, cut_of, res, frozen)
    missing: list[tuple[str, torch.Tensor]] = []
    for key, (name, t) in expected.items():
        if key in reached:
            res.checked.append((name, "ok", t))
        else:
            res.checked.append((name, "none", t))
            missing.append((name, t))
    res.findings += frozen.values()
    res.findings += _why_missing(ctx, cut_of, missing)
    res.findings += _unregistered(ctx)
    return res


def _expected(
    ctx: Context, cut_of: dict[int, Cut], res: Result, frozen: dict[Site, Raw]
) -> dict[int, tuple[str, torch.Tensor]]:
    """The tensors this backward call should reach (module docstring); frozen parameters go to
    ``res.checked`` and, when the tracker saw the freeze, to ``frozen``."""
    names, reached = ctx.names, ctx.walk.leaves
    expected: dict[int, tuple[str, torch.Tensor]] = {}
    reached_roots = {id(names.param_root[k].module) for k in reached if k in names.param_root}
    shared: set[int] = set()
    for group in ctx.optimizer_groups:
        if any(k in group for k in reached):
            shared |= group
    for root in names.roots:
        params = list(root.module.named_parameters())
        in_graph = id(root.module) in reached_roots
        cut_off = any(id(p) in cut_of for _, p in params)
        named = any(id(p) in ctx.expect_ids for _, p in params)
        shares = not reached_roots or any(id(p) in shared for _, p in params)
        if not in_graph and not (cut_off and (shares or named)):
            continue
        for _, p in params:
            qual = names.param_name.get(id(p))
            if qual is None:
                continue
            if p.requires_grad or id(p) in ctx.expect_ids:
                expected[id(p)] = (qual, p)
                continue
            res.checked.append((qual, "frozen", None))
            froze = ctx.tracker.rg_off.get(p)
            if froze is not None:  # a freeze we saw: say so (a layer frozen by mistake)
                raw = frozen.get(froze.site)
                if raw is None:
                    raw = frozen[froze.site] = Raw(
                        "requires_grad_false",
                        froze,
                        [],
                        "frozen here, so not checked: list these tensors under `expect` "
                        "if they should learn (or under `frozen` to drop this line)",
                        severity="info",
                    )
                raw.names.append(qual)
    for key, (name, t) in names.leaves.items():
        if key in ctx.only_grad_inputs and key not in ctx.expect_ids:
            continue  # its gradient came back from autograd.grad (higher_order.py)
        if key in ctx.expect_ids or (
            t.is_leaf and t.requires_grad and (key in reached or key in cut_of)
        ):
            expected[key] = (name, t)
    return expected


def _why_missing(
    ctx: Context, cut_of: dict[int, Cut], missing: list[tuple[str, torch.Tensor]]
) -> list[Raw]:
    """One finding per cause (grouped by :func:`~gradcheck_cli.model.group_key`)."""
    by_group: dict[tuple[Any, ...], Raw] = {}

    def add(kind: str, where: CallSite | Site | None, name: str, message: str, **kw: Any) -> None:
        site = where.site if isinstance(where, CallSite) else where
        key = group_key(kind, site, kw.get("severity"), message)
        raw = by_group.get(key)
        if raw is None:
            raw = by_group[key] = Raw(kind, where, [], message, **kw)
        raw.names.append(name)

    for name, t in missing:
        if not t.requires_grad:
            where = ctx.tracker.rg_off.get(t) or ctx.tracker.born.get(t)
            add("requires_grad_false", where, name, "does not require grad")
        elif t.grad_fn is not None and ctx.explicit_inputs is None:  # (inputs= may be non-leaf)
            add("non_leaf", ctx.tracker.made_from.get(t), name, "is not a leaf tensor")
        elif (cut := cut_of.get(id(t))) is not None:
            add(
                cut.kind,
                cut.where,
                name,
                cut_message(cut),
                hint=cut_hint(cut),
                path=cut_path(cut, t),
            )
        else:
            where, message, hint = _unused(ctx, t)
            add("unused_parameter", where, name, message, hint=hint)
    return list(by_group.values())


def _unused(ctx: Context, t: torch.Tensor) -> tuple[CallSite | Site | None, str, str | None]:
    """Where and why a parameter with no cut on its way never reached the loss."""
    names = ctx.names
    module, attr = _owner(names, t)
    if module is None or attr is None:
        return ctx.tracker.born.get(t), "never contributed to this loss", None
    parent = _parent(names, module)
    mod_name = names.module_name(module) or type(module).__name__
    where: CallSite | Site | None
    if id(module) in ctx.ran_modules:
        where = attribute_site(parent, attr, "forward", call=True) if parent is not None else None
        msg = f"`{mod_name}` ran, but its output never reached this loss"
    else:
        # Where it should have run (a call skipped by a branch), else where it was defined.
        where = (
            attribute_site(parent, attr, "forward", call=True)
            or attribute_site(parent, attr, "__init__")
            if parent is not None
            else None
        )
        msg = f"`{mod_name}` never ran in this forward pass"
    hint = None
    if where is None:
        # A library's module (a pretrained model's pooler): point at the user's own line that
        # uses the library model holding it.
        where, holder = _nearest_user_site(names, module)
        if holder is not None and parent is not None and not _user_class(parent):
            hint = (
                f"`{names.module_name(holder) or type(holder).__name__}` "
                f"({type(holder).__name__}) is library code: if this part's output is not "
                "needed, build it without that part (many models have an option for it), "
                "or list these parameters under `allow_none` in gradcheck.yaml."
            )
    return where, msg, hint


def _unregistered(ctx: Context) -> list[Raw]:
    """Tensors the module uses but never registered: they get gradients no optimizer sees."""
    names = ctx.names
    unreg: dict[tuple[int, str], Raw] = {}
    for key, u in names.unregistered.items():
        if key not in ctx.walk.leaves:
            continue
        site = attribute_site(u.owner, u.attr, "__init__")
        group = unreg.get((id(u.owner), u.attr))
        if group is None:
            owner = names.module_name(u.owner) or type(u.owner).__name__
            group = unreg[(id(u.owner), u.attr)] = Raw(
                "unregistered_parameter",
                site,
                [],
                f"`{owner}.{u.attr}` is a plain {type(getattr(u.owner, u.attr)).__name__}: its tensors get gradients, "
                "but model.parameters() (and so the optimizer) never includes them",
                grad_state="present",
            )
        group.names.append(u.name)
    return list(unreg.values())


def _descend(root: nn.Module, parts: list[str]) -> list[nn.Module]:
    """The modules along a dotted path from ``root`` (``root`` first)."""
    chain = [root]
    for part in parts:
        parent = chain[-1]
        chain.append(parent[int(part)] if part.isdigit() else getattr(parent, part))  # type: ignore[index]
    return chain


def _owner(names: Names, t: torch.Tensor) -> tuple[nn.Module | None, str | None]:
    """The submodule owning parameter ``t`` and its attribute name in its parent."""
    qual = names.param_name.get(id(t))
    root = names.param_root.get(id(t))
    if qual is None or root is None:
        return None, None
    module_path = qual[len(root.name) + 1 :].split(".")[:-1]
    if not module_path:
        return root.module, None
    return _descend(root.module, module_path)[-1], module_path[-1]


def _module_chain(names: Names, module: nn.Module) -> tuple[list[nn.Module], list[str]]:
    """``module``'s ancestors from its root down to itself, and the attribute names between."""
    entry = names.module_path.get(id(module))
    if entry is None:
        return [], []
    root, path = entry
    parts = path.split(".") if path else []
    return _descend(root.module, parts), parts


def _parent(names: Names, module: nn.Module) -> nn.Module | None:
    chain, _ = _module_chain(names, module)
    return chain[-2] if len(chain) > 1 else None


def _user_class(module: nn.Module) -> bool:
    home = sys.modules.get(type(module).__module__)
    return is_user_file(getattr(home, "__file__", None) or "<library>")


def _nearest_user_site(names: Names, module: nn.Module) -> tuple[Site | None, nn.Module | None]:
    """The call (in ``forward``) or assignment (in ``__init__``) of ``module``'s nearest ancestor
    that user code holds as an attribute, and that ancestor."""
    chain, parts = _module_chain(names, module)
    for i in range(len(parts) - 1, -1, -1):
        owner, attr = chain[i], parts[i]
        if attr.isdigit():
            continue  # an entry of a container: its use is the container's
        site = attribute_site(owner, attr, "forward", call=True) or attribute_site(owner, attr)
        if site is not None:
            return site, chain[i + 1]
    return None, None


_CHECKPOINT_FILE = os.path.join("torch", "utils", "checkpoint.py")


def _in_reentrant_checkpoint(cut: Cut) -> bool:
    origin = cut.where.origin
    return (
        cut.kind in KINDS
        and KINDS[cut.kind].region is not None
        and origin is not None
        and origin.file.endswith(_CHECKPOINT_FILE)
    )


def cut_hint(cut: Cut) -> str | None:
    if _in_reentrant_checkpoint(cut):
        return (
            "Run the check with `use_reentrant=False` in this checkpoint call (the same gradients, "
            "a graph gradcheck can follow) to get the line inside the segment."
        )
    return None


def cut_message(cut: Cut) -> str:
    kind = cut.kind
    if _in_reentrant_checkpoint(cut):
        return (
            "inside this reentrant `torch.utils.checkpoint` segment, whose forward runs without "
            "grad and is re-run during backward: the re-run sent these parameters no gradient, "
            "so the cut is inside the segment (pass use_reentrant=False to see its line)"
        )
    entry = KINDS.get(kind)
    if entry is None:
        return kind
    if entry.region is not None:
        return entry.message(region=entry.region)
    if kind in ("python_scalar_roundtrip", "numpy_roundtrip"):
        via = cut.origin.where.site if cut.origin is not None else None
        escape = cut.origin.op if cut.origin is not None else "a conversion"
        place = f" at {via.file.rsplit('/', 1)[-1]}:{via.line}" if via is not None else ""
        return entry.message(escape=escape, place=place, op=cut.op)
    return entry.message(op=cut.op) if entry.messages else kind


def not_differentiable_note(
    cuts: list[Cut], frozen_site: CallSite | None
) -> tuple[CallSite | None, str]:
    """Why a loss does not require grad: the cut nearest its origin, or a freeze."""
    if cuts:
        cut = sorted(cuts, key=lambda c: c.id)[0]
        return cut.where, f"the loss was cut off from the graph: {cut_message(cut)}"
    if frozen_site is not None:
        return (
            frozen_site,
            "no parameter that reaches the loss requires grad: requires_grad was turned off",
        )
    return None, "no tensor that requires grad was used to compute the loss"
