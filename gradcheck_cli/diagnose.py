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
from collections.abc import Container
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
    # This step's other cut events (that did not tag the loss), nearest the loss first.
    events: list[Cut] = field(default_factory=list)
    earlier_nodes: Container[int] = field(default_factory=set)  # the last checked backward's graph
    _event_of: dict[int, Cut] | None = None

    def event_of(self, key: int) -> Cut | None:
        """The cut event nearest the loss whose input graph reached tensor ``key`` — how a value
        that left through ``.item()`` or a re-wrap starved it, when no tag says so."""
        if self._event_of is None:
            self._event_of = {}
            for cut in self.events:
                # Only what this step's graph fed the event: a value read from the parameters
                # themselves (an evaluation under no_grad, then `.item()`) is no cut of the loss.
                # Nor is a value read from an earlier backward's graph (logging `loss.item()`).
                nodes = [
                    r
                    for k, r in cut.roots.items()
                    if not isinstance(r, torch.Tensor) and k not in self.earlier_nodes
                ]
                for leaf in leaves_under(nodes, self.names.alias):
                    self._event_of.setdefault(leaf, cut)
        return self._event_of.get(key)


@dataclass
class Deferred:
    """Tensors this backward did not expect, cut off from its loss: expected after all if an
    optimizer that holds them steps before the next backward (a GAN's generator step)."""

    ids: dict[int, str]  # tensor id -> name
    raw: Raw


@dataclass
class Result:
    findings: list[Raw] = field(default_factory=list)
    checked: list[tuple[str, str, torch.Tensor | None]] = field(
        default_factory=list
    )  # (name, state, tensor)
    explained: set[int] = field(default_factory=set)  # tensors a finding here explains
    deferred: list[Deferred] = field(default_factory=list)


def diagnose(ctx: Context) -> Result:
    res = Result()
    reached = ctx.walk.leaves
    # Which parameters did each cut that fed this loss starve? The earliest cut wins.
    cut_of: dict[int, Cut] = {}
    for cut in sorted(ctx.loss_cuts, key=lambda c: c.id):
        for key in leaves_under(cut.roots.values(), ctx.names.alias):
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
        expected.update(_expected_non_leaves(ctx))
    missing: list[tuple[str, torch.Tensor]] = []
    for key, (name, t) in expected.items():
        if key in reached:
            res.checked.append((name, "ok", t))
        else:
            res.checked.append((name, "none", t))
            missing.append((name, t))
    res.findings += frozen.values()
    res.findings += _why_missing(ctx, cut_of, missing)
    res.explained |= {id(t) for _, t in missing}
    return res


def is_user_cut(cut: Cut) -> bool:
    """A cut the user's own code made. One made inside torch or a framework (``state_dict()``,
    ``nn.init``, an optimizer, an EMA update) is never the cause of a finding — except a reentrant
    checkpoint segment's region, which stands for the user's code inside it."""
    return not cut.where.library or _in_reentrant_checkpoint(cut)


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
        params = [(n, names.user_tensor(p)) for n, p in root.named_parameters()]
        in_graph = id(root.module) in reached_roots
        cut_off = not in_graph and any(
            id(p) in cut_of or ctx.event_of(id(p)) is not None for _, p in params
        )
        named = any(id(p) in ctx.expect_ids for _, p in params)
        shares = not reached_roots or any(id(p) in shared for _, p in params)
        if not in_graph and not (cut_off and (shares or named)):
            if cut_off:
                _defer(ctx, cut_of, res, params)
            continue
        for _, p in params:
            qual = names.param_name.get(id(p))
            if qual is None:
                continue
            if p.requires_grad or id(p) in ctx.expect_ids or ctx.tracker.frozen_held.get(p):
                expected[id(p)] = (qual, p)
                continue
            res.checked.append((qual, "frozen", None))
            res.explained.add(id(p))
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


def _defer(
    ctx: Context, cut_of: dict[int, Cut], res: Result, params: list[tuple[str, nn.Parameter]]
) -> None:
    """Findings-in-waiting for a root model cut off from this loss (see :class:`Deferred`)."""
    waiting = [
        (qual, p)
        for _, p in params
        if p.requires_grad and (qual := ctx.names.param_name.get(id(p))) is not None
    ]
    for raw in _why_missing(ctx, cut_of, waiting):
        ids = {id(p): qual for qual, p in waiting if qual in raw.names}
        res.deferred.append(Deferred(ids, raw))


def _expected_non_leaves(ctx: Context) -> dict[int, tuple[str, torch.Tensor]]:
    """Non-leaf tensors the config expects (``expect: [W]`` for ``W = leaf.to(device)``): they
    get no gradient of their own, which is reported as ``non_leaf``."""
    found: dict[int, tuple[str, torch.Tensor]] = {}
    for key, (name, ref) in ctx.names.non_leaves.items():
        t = ref()
        if key in ctx.expect_ids and t is not None:
            found[key] = (name, t)
    return found


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
            tracker = ctx.tracker
            where = tracker.rg_off.get(t) or tracker.born.get(t) or _assignment_site(ctx, t)
            variant = "after_optimizer" if tracker.frozen_held.get(t) else "default"
            add("requires_grad_false", where, name, KINDS["requires_grad_false"].message(variant))
        elif t.grad_fn is not None and ctx.explicit_inputs is None:  # (inputs= may be non-leaf)
            add("non_leaf", ctx.tracker.made_from.get(t), name, "is not a leaf tensor")
        elif (cut := cut_of.get(id(t)) or ctx.event_of(id(t))) is not None:
            add(
                cut.kind,
                cut.where,
                name,
                cut_message(cut),
                hint=cut_hint(cut),
                path=cut_path(cut, t, ctx.names.alias),
            )
        else:
            where, message, hint, severity = _unused(ctx, t)
            add("unused_parameter", where, name, message, hint=hint, severity=severity)
    return list(by_group.values())


def _assignment_site(ctx: Context, t: torch.Tensor) -> Site | None:
    """Where the module that owns parameter ``t`` assigned it (``nn.Parameter(...)`` in ``__init__``)."""
    module, _ = _owner(ctx.names, t)
    qual = ctx.names.param_name.get(id(t))
    if module is None or qual is None:
        return None
    return attribute_site(module, qual.rsplit(".", 1)[-1], "__init__")


def _unused(
    ctx: Context, t: torch.Tensor
) -> tuple[CallSite | Site | None, str, str | None, str | None]:
    """Where and why a parameter with no cut on its way never reached the loss, a hint, and the
    severity when not the rule's (an unused part of a library model is a warning)."""
    names = ctx.names
    module, attr = _owner(names, t)
    if module is None or attr is None:
        return ctx.tracker.born.get(t), "never contributed to this loss", None, None
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
    if where is not None:
        return where, msg, None, None
    # Not a line of the user's own class: point at the user's line that holds the model around it.
    where, holder, library = _nearest_user_site(names, module)
    if holder is None or not library:
        return where, msg, None, None  # a member of a container the user built is the user's
    rule = KINDS["unused_parameter"]
    holder_name = names.module_name(holder) or type(holder).__name__
    fields = {"holder": holder_name, "cls": type(holder).__name__}
    msg += rule.message("library_part", **fields)
    severity = "error" if id(t) in ctx.expect_ids else "warning"
    return where, msg, rule.message("library_hint", **fields), severity


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


# Containers hold what their builder put in them: a member's builder is the container's.
_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)


def _nearest_user_site(
    names: Names, module: nn.Module
) -> tuple[Site | None, nn.Module | None, bool]:
    """The call (in ``forward``) or assignment (in ``__init__``) of ``module``'s nearest ancestor
    that user code holds as an attribute, that ancestor, and whether library code built the part
    of it that leads to ``module`` (a library class assigned it, not a container the user filled:
    an ``nn.ModuleList`` built in the user's ``__init__`` is the user's, whatever its class)."""
    chain, parts = _module_chain(names, module)
    for i in range(len(parts) - 1, -1, -1):
        owner, attr = chain[i], parts[i]
        if attr.isdigit():
            continue  # an entry of a container: its use is the container's
        site = attribute_site(owner, attr, "forward", call=True) or attribute_site(owner, attr)
        if site is not None:
            library = any(
                not isinstance(chain[j], _CONTAINERS) and not _user_class(chain[j])
                for j in range(i + 1, len(parts))
            )
            return site, chain[i + 1], library
    if chain and not _user_class(chain[0]):  # the root is a library model (`BertModel(...)`)
        return None, chain[0], any(not isinstance(c, _CONTAINERS) for c in chain[:-1])
    return None, None, False


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
        if cut.origin is None:  # the escape itself (.item(), .numpy()), not its re-entry
            return entry.message("escaped", op=_escape_call(cut.op))
        via = cut.origin.where.site if cut.origin is not None else None
        escape = cut.origin.op if cut.origin is not None else "a conversion"
        place = f" at {via.file.rsplit('/', 1)[-1]}:{via.line}" if via is not None else ""
        return entry.message(escape=escape, place=place, op=cut.op)
    return entry.message(op=cut.op) if entry.messages else kind


def _escape_call(op: str) -> str:
    name = op.rsplit(".", 1)[-1]
    return {"__float__": "float(t)", "__int__": "int(t)", "__index__": "int(t)"}.get(
        name, f".{name}()"
    )


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
