"""The check of one backward call: read the graph before autograd runs, run it, diagnose after.

:class:`BackwardCheck` is built by the :class:`~gradcheck_cli.session.Session` for each checked
backward call; what it reads before autograd runs travels in a :class:`PreparedCall`.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from gradcheck_cli import model as m
from gradcheck_cli import zeros
from gradcheck_cli.diagnose import Context, Result, diagnose, is_user_cut, not_differentiable_note
from gradcheck_cli.findings import Raw, is_serious, model_site
from gradcheck_cli.graph import MarkedWalk, Walk, leaves_under, walk_graph
from gradcheck_cli.higher_order import GRAD_API, input_without_grad, unused_allowed
from gradcheck_cli.name_patterns import named_tensors
from gradcheck_cli.naming import Names
from gradcheck_cli.rules import KINDS
from gradcheck_cli.sites import CallSite, capture
from gradcheck_cli.tracking import Cut

if TYPE_CHECKING:
    from gradcheck_cli.session import Session

_PROBE_FIRST_NODES = 5_000  # graphs up to this size get the zero-gradient probe on the first check
# A graph this big is walked once; the check of the step that repeats it reads .grad marks.
_MARKS_FROM_NODES = 20_000
_CHECKPOINT_NODE = "CheckpointFunctionBackward"  # torch.utils.checkpoint, use_reentrant=True
_NOT_DIFFERENTIABLE = ("does not require grad", "does not have a grad_fn")
_UNUSED_INPUT = "appears to not have been used in the graph"
# Cut events that can explain a tensor the loss missed (comparisons and no_grad regions are too
# common in correct code — accuracy, early-exit tests, evaluation — to be blamed without a tag).
_EVENT_KINDS = frozenset(
    ("python_scalar_roundtrip", "numpy_roundtrip", "rewrap_tensor", "detach", "data_attr")
)
# Runs the enclosed torch calls without any TorchFunctionMode or subclass __torch_function__.
_no_torch_function = torch._C.DisableTorchFunction


@dataclass
class PreparedCall:
    """What is read before autograd runs."""

    losses: list[torch.Tensor]
    inputs: list[torch.Tensor] | None  # autograd.grad / backward(inputs=...): exactly these
    where: CallSite | None
    walk: Walk
    loss_cuts: list[Cut]
    names: Names
    record: m.Step
    probe: zeros.Probe | None
    stamped: bool  # the op tracker stamped the forward's ops with their sites


class BackwardCheck:
    def __init__(
        self, session: Session, index: int, api: str, call: Any, dormant: bool = False
    ) -> None:
        self.session = session
        self.index = index
        self.api = api
        self.call = call
        self.analysis_seconds = 0.0
        self.dormant = dormant  # made while the op tracker slept: no cut or site was recorded
        self.serious = 0  # findings made that are more than information
        self.lost = False  # made asleep, it saw another outcome than the last check made awake
        self.repeated = False  # made asleep, it repeats the findings of the last check made awake

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        gc_was_on = gc.isenabled()
        # The walk wraps every autograd node in a Python object; on a 100k-node graph the cyclic
        # collector's passes over them cost more than the walk itself. They are freed by
        # reference counting when the check ends, so collection is paused until then.
        gc.disable()
        started = time.perf_counter()
        in_autograd = 0.0
        call = self.call

        def autograd(*a: Any, **k: Any) -> Any:
            nonlocal in_autograd
            t0 = time.perf_counter()
            try:
                return call(*a, **k)
            finally:
                in_autograd += time.perf_counter() - t0

        try:
            return self._checked(autograd, args, kwargs)
        finally:
            self.analysis_seconds = time.perf_counter() - started - in_autograd
            if gc_was_on:
                gc.enable()

    def _checked(self, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        session = self.session
        session.steps_checked += 1
        prepared = None
        # Our own tensor calls skip the TorchFunctionMode (it is suspended anyway; this saves
        # its dispatch, a few thousand calls per check on a model with a thousand parameters).
        with session.guard("preparing to check a backward()"), _no_torch_function():
            prepared = self._prepare(args, kwargs)
        if prepared is None:
            return call(*args, **kwargs)
        p = prepared
        marked = isinstance(p.walk, MarkedWalk)
        unseen: dict[int, tuple[int, int]] = {}
        if not marked:
            with session.guard("preparing to check a backward()"):
                unseen = _grad_marks(p.names, p.walk)
        try:
            result = call(*args, **kwargs)
        except RuntimeError as e:
            if p.probe is not None:
                p.probe.remove()
            text = str(e)
            with session.guard("diagnosing a failed backward()"), _no_torch_function():
                frozen_input = input_without_grad(
                    p.inputs, p.losses, p.names, session.tracker, p.where
                )
                if frozen_input is not None:  # autograd.grad w.r.t. a tensor that needs no grad
                    self._add_with_note(frozen_input, e)
                elif any(s in text for s in _NOT_DIFFERENTIABLE):
                    self._not_differentiable(e, p)
                elif _UNUSED_INPUT in text and p.inputs:
                    self._diagnose(p, args, kwargs, exc=e)
            session.record(p.record)
            raise
        if p.probe is not None:
            p.probe.remove()
        with session.guard("checking a backward()"), _no_torch_function():
            if marked:
                p.walk.settle()  # type: ignore[attr-defined]
                if not self.dormant and frozenset(p.walk.leaves) != session.walked_reached:
                    _walk_instead(p.walk, p.names)  # type: ignore[arg-type]
            else:
                _reached_unseen(p.names, p.walk, unseen)
            if not self.dormant and p.walk.complete:
                _remember_walk(session, p.walk, p.names)
            if self.api == GRAD_API:  # returns gradients, writes no .grad
                session.grad_calls.record(p.inputs or [], args, kwargs, result, p.where)
            else:
                session.optim.after_backward(p.walk.leaves)
            if p.probe is not None:
                p.probe.resolve()
            self._diagnose(p, args, kwargs)
        session.record(p.record)
        return result

    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> PreparedCall:
        """Everything read before autograd runs: the graph, the cuts that fed the loss, the names."""
        session = self.session
        losses, inputs = _split_args(self.api, args, kwargs)
        where = capture()
        tags: frozenset[int] = frozenset()
        for t in losses:
            tags |= session.tracker.tags.get(t) or frozenset()
        loss_cuts = [c for c in session.tracker.tags_of(tags) if is_user_cut(c)]
        names = session.build_names(reuse=self.dormant)
        starts = [t.grad_fn for t in losses]
        walk: Walk
        if self._marks_suffice(inputs, names, losses, args, kwargs):
            walk = MarkedWalk(starts, _named_tensors(names))
        else:
            walk = walk_graph(starts)
            for t in losses:
                if t.grad_fn is None and t.requires_grad:
                    walk.leaves[id(t)] = t
            walk.see_through(names.alias)
        record = m.Step(
            self.index, self.api, model_site(where), _loss_info(losses[0]) if losses else None
        )
        session.devices.update(str(t.device) for t in losses[:1])
        # The probe hooks every node: always affordable on a small graph, otherwise only on demand.
        small = session.steps_checked == 1 and len(walk.nodes) <= _PROBE_FIRST_NODES
        probe = zeros.attach(walk) if (session.zero_check.pending or small) else None
        stamped = session.tracker.stamp and not self.dormant
        return PreparedCall(losses, inputs, where, walk, loss_cuts, names, record, probe, stamped)

    def _marks_suffice(
        self,
        inputs: list[torch.Tensor] | None,
        names: Names,
        losses: list[torch.Tensor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> bool:
        """Can this check read what the backward reached from ``.grad`` marks instead of a
        walk of the graph? Through ``backward()`` into plain ``.grad`` fields: no explicit inputs,
        no FSDP stand-ins, no distributed reducer (DDP fills in an unused parameter's gradient
        from the other ranks), no zero-gradient probe to attach. And either made while the
        tracker sleeps (the step repeats one walked before), or made awake on the step before
        the tracker would sleep, when the last walk was of a big graph: if the marks then show
        another outcome than that walk, the graph is walked after all (:func:`_walk_instead`)."""
        session = self.session
        if not (
            inputs is None
            and self.api != GRAD_API
            and not names.alias
            and not session.zero_check.pending
            and all(t.grad_fn is not None for t in losses)
            and not (torch.distributed.is_available() and torch.distributed.is_initialized())
        ):
            return False
        if self.dormant:
            return True
        return (
            session.walked_reached is not None
            and session.sleeps_after_step()
            and not _keeps_graph(args, kwargs)
        )

    def _diagnose(
        self,
        p: PreparedCall,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        session = self.session
        optimizer_groups = session.optimizer_groups(p.names)
        ctx = Context(
            api=self.api,
            losses=p.losses,
            walk=p.walk,
            names=p.names,
            loss_cuts=p.loss_cuts,
            tracker=session.tracker,
            ran_modules=session.ran_modules(),
            optimizer_groups=optimizer_groups,
            explicit_inputs=p.inputs,
            events=self._events(p),
            earlier_nodes=session.expectations.earlier_nodes,
            allow_unused=unused_allowed(self.api, args, kwargs),
            only_grad_inputs=session.grad_calls.only_inputs(p.names, optimizer_groups),
        )
        resolved = session.patterns.resolve(p.names) if session.patterns.active else None
        tensors = named_tensors(p.names) if resolved else {}
        if resolved:
            ctx.expect_ids = {id(tensors[n]) for n in resolved["expect"] if n in tensors}
        result = diagnose(ctx)
        if self.dormant:  # (no module hook saw which modules ran: the step repeats the last)
            session.unregistered.repeat(self.index)
        else:
            session.unregistered.note(ctx, self.index)
        result.findings += session.grad_calls.cut_penalties(p.loss_cuts, p.walk, p.names)
        if p.inputs is None:
            result.findings += session.zero_check.findings(
                result,
                p.walk,
                p.probe,
                p.losses,
                p.names,
                p.record,
                not session.records_full,
                p.stamped,
            )
        else:
            p.record.checked += [m.Checked(name, state) for name, state, _ in result.checked]
        if resolved:
            result.findings = session.patterns.apply(
                result.findings, resolved, tensors, p.walk, p.where
            )
        states = [(c.name, c.state) for c in p.record.checked]
        if exc is None:
            self._repeat_or_remember(result, states)
        if p.inputs is None and exc is None:  # routed/skipped modules: decided when the window ends
            result.findings = session.routing.observe(
                result.findings, states, p.names, ctx.expect_ids, self.index
            )
        # (a marked walk's graph is walked for this only when the check woke the tracker, or,
        # made awake, when a later check asks: the next check, awake, must tell a value read
        # from this step's graph from a cut)
        walked = p.walk.complete or self.lost
        kept = p.walk if walked or not self.dormant else None
        session.expectations.after_backward(self.index, result, kept, lazy=not walked)
        for raw in result.findings:
            self._add_with_note(raw, exc)

    def _repeat_or_remember(self, result: Result, states: list[tuple[str, str]]) -> None:
        """A check made while the op tracker slept that saw every expected tensor end as the
        last check made awake saw them repeats that check's findings (it could not tell a cut or
        which modules ran); any other outcome is ``lost``: the tracker wakes, and what this check
        found is held for the next check. A check made awake is remembered."""
        session = self.session
        if not self.dormant:
            session.awake_outcome = (states, [_fresh(r) for r in result.findings if _repeats(r)])
            return
        last = session.awake_outcome
        if last is not None and last[0] == states:
            kept = [r for r in result.findings if not _repeats(r)]
            result.findings = kept + [_fresh(r) for r in last[1]]
            self.repeated = True
        else:
            self.lost = True

    def _add_with_note(self, raw: Raw, exc: BaseException | None) -> None:
        session = self.session
        if is_serious(raw):
            self.serious += 1
            if exc is None:
                if self.dormant and not self.repeated:  # (Session._settle_mode)
                    session.hold(raw, self.index)
                    return
                session.take_over_held(raw)
        finding = session.book.add(raw, self.index)
        if exc is not None:
            where = finding.site.display if finding.site else "unknown site"
            exc.add_note(f"gradcheck: {', '.join(raw.names)}: {raw.message} ({where})")

    def _events(self, p: PreparedCall) -> list[Cut]:
        """This step's user cuts that did not tag the loss, nearest the loss (latest) first; a
        value read from an earlier backward's graph (``loss.item()`` for logging) is not one."""
        fed = {c.id for c in p.loss_cuts}
        earlier = self.session.expectations.earlier_nodes
        return [
            c
            for c in sorted(self.session.tracker.cuts.values(), key=lambda c: -c.id)
            if c.id not in fed
            and c.kind in _EVENT_KINDS
            and is_user_cut(c)
            and not (c.roots and all(k in earlier for k in c.roots))
        ]

    def _not_differentiable(self, exc: RuntimeError, p: PreparedCall) -> None:
        tracker = self.session.tracker
        if not p.loss_cuts:
            frozen: dict[Any, list[str]] = {}
            for root in p.names.roots:
                for param in root.module.parameters():
                    site = tracker.rg_off.get(param)
                    name = p.names.name_of(param)
                    if site is not None and name is not None:
                        frozen.setdefault(site, []).append(name)
            if frozen:  # everything the loss uses was frozen: the freeze is the cause
                site, frozen_names = next(iter(frozen.items()))
                text = KINDS["requires_grad_false"].message("loss_frozen")
                raw = Raw("requires_grad_false", site, frozen_names, text, grad_state="raised")
                finding = self.session.book.add(raw, self.index)
                loc = f" at {finding.site.display}: `{finding.site.code}`" if finding.site else ""
                exc.add_note(f"gradcheck: {text}{loc}")
                return
        site, text = not_differentiable_note(p.loss_cuts, None)
        cut_names: list[str] = []
        for cut in p.loss_cuts[:1]:
            for t in leaves_under(cut.roots.values(), p.names.alias).values():
                name = p.names.name_of(t)
                if name is not None:
                    cut_names.append(name)
        raw = Raw("loss_not_differentiable", site or p.where, cut_names, text, grad_state="raised")
        finding = self.session.book.add(raw, self.index)
        loc = f" at {finding.site.display}: `{finding.site.code}`" if finding.site else ""
        exc.add_note(f"gradcheck: {text}{loc}")


def _repeats(raw: Raw) -> bool:
    """A finding a check made asleep repeats from the last one made awake: what needs the
    tracker's view (cuts, which modules ran) — all but the zero check's information."""
    return is_serious(raw) or raw.kind == "unused_parameter"


def _fresh(raw: Raw) -> Raw:
    return dataclasses.replace(
        raw, names=list(raw.names), earlier_steps=[], related=list(raw.related)
    )


def _named_tensors(names: Names) -> dict[int, torch.Tensor]:
    """The named tensors that require grad (parameters, plain leaves, unregistered), by id."""
    found = {k: t for k, t in names.params.items() if t.requires_grad}
    found.update((k, t) for k, (_, t) in names.leaves.items() if t.requires_grad)
    found.update((k, u.tensor) for k, u in names.unregistered.items() if u.tensor.requires_grad)
    return found


def _grad_marks(names: Names, walk: Walk) -> dict[int, tuple[int, int]]:
    """``.grad`` identity and version of the named tensors the walk did not reach, when the graph
    holds a reentrant checkpoint (only then can this backward reach them unseen; DDP also fills
    in a locally unused parameter's gradient, from the other ranks, which must still count as
    missing here)."""
    marks: dict[int, tuple[int, int]] = {}
    tensors = [*names.params.items(), *((k, t) for k, (_, t) in names.leaves.items())]
    for key, t in tensors:
        if key not in walk.leaves and t.requires_grad:
            g = t.grad
            marks[key] = (0, -1) if g is None else (id(g), g._version)
    if marks and not _has_checkpoint(walk):
        return {}
    return marks


def _has_checkpoint(walk: Walk) -> bool:
    return any(type(n).__name__ == _CHECKPOINT_NODE for n in walk.nodes.values())


def _walk_instead(walk: MarkedWalk, names: Names) -> None:
    """A check made awake from ``.grad`` marks saw another outcome than the last walk: what
    the backward reached is what a walk before autograd would have said (the graph is walked
    now), with :func:`_reached_unseen`'s exception for a reentrant checkpoint."""
    unseen = walk.walk_now()
    if unseen and _has_checkpoint(walk):
        for key, t in unseen.items():
            if key in names.params or key in names.leaves:
                walk.leaves[key] = t


def _remember_walk(session: Session, walk: Walk, names: Names) -> None:
    """What a walk of a big graph reached, for the next check to compare its marks with."""
    if len(walk.nodes) < _MARKS_FROM_NODES:
        session.walked_reached = None
        return
    named = _named_tensors(names)
    session.walked_reached = frozenset(k for k in walk.leaves if k in named)


def _keeps_graph(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """``retain_graph`` or ``create_graph``: a graph kept for later use (holding it one step
    longer would hold what its nodes saved)."""
    # (Tensor.backward and torch.autograd.backward alike: loss(es), gradient, retain, create)
    retain = kwargs.get("retain_graph", args[2] if len(args) > 2 else None)
    create = kwargs.get("create_graph", args[3] if len(args) > 3 else False)
    return bool(retain) or bool(create)


def _reached_unseen(names: Names, walk: Walk, marks: dict[int, tuple[int, int]]) -> None:
    """Count as reached what got a gradient from this backward through a node the walk cannot
    see into: reentrant ``torch.utils.checkpoint`` re-runs its forward during the backward."""
    for key, mark in marks.items():
        t = names.params.get(key)
        if t is None:
            t = names.leaves[key][1]
        g = t.grad
        if g is not None and (id(g), g._version) != mark:
            walk.leaves[key] = t


def _as_list(x: Any) -> list[torch.Tensor]:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for t in x if isinstance(t, torch.Tensor)]


def _split_args(
    api: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """(loss tensors, explicit inputs or None) for each backward entry point."""
    if api == "Tensor.backward":
        inputs = kwargs.get("inputs", args[4] if len(args) > 4 else None)
        return [args[0]], (_as_list(inputs) or None)
    if api == "torch.autograd.backward":
        tensors = kwargs.get("tensors", args[0] if args else None)
        inputs = kwargs.get("inputs", args[5] if len(args) > 5 else None)
        return _as_list(tensors), (_as_list(inputs) or None)
    outputs = kwargs.get("outputs", args[0] if args else None)
    inputs = kwargs.get("inputs", args[1] if len(args) > 1 else None)
    return _as_list(outputs), _as_list(inputs)


def _loss_info(t: torch.Tensor) -> m.LossInfo:
    return m.LossInfo(
        list(t.shape),
        str(t.dtype).replace("torch.", ""),
        bool(t.requires_grad),
        type(t.grad_fn).__name__ if t.grad_fn is not None else None,
    )
