"""The engine: installs the instrumentation, checks each backward, builds the :class:`Report`.

``with gradcheck_cli.watch() as session: ...`` works anywhere (a notebook, a pytest fixture, a
training framework's callback); ``gradcheck run`` wraps the script's execution in the same thing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from gradcheck_cli import __version__, optim, zeros
from gradcheck_cli import model as m
from gradcheck_cli.config import Config, match_names, unmatched_error
from gradcheck_cli.diagnose import (
    Context,
    Raw,
    diagnose,
    leaves_under,
    not_differentiable_note,
    walk_graph,
)
from gradcheck_cli.errors import EXIT_USAGE, GradcheckExit
from gradcheck_cli.naming import Names, build_names, frame_namespaces
from gradcheck_cli.patches import PatchSet, install
from gradcheck_cli.rules import rule_for
from gradcheck_cli.sites import CallSite, Site, capture, display_path, nearest_user_frame
from gradcheck_cli.tracking import CutTracker, Tracker

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_GRADCHECK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_OVERRIDES_SUFFIX = os.path.join("torch", "overrides.py")
_COMPILE_HOOK_WARNING = r"Using `torch.compile\(module\)` when there are global hooks"
_MAX_STEP_RECORDS = 20
_PROBE_FIRST_NODES = 5_000  # graphs up to this size get the zero-gradient probe on the first check
_MAX_STEP_INDICES = 100
_CHECKPOINT_NODE = "CheckpointFunctionBackward"  # torch.utils.checkpoint, use_reentrant=True
# A `.grad` read that only tests for None is not a sign the user expected a gradient there.
_NONE_TEST = re.compile(
    r"\.grad\s+is\s+(not\s+)?None|\.grad\s*(==|!=)\s*None|if\s+[\w.\[\]]+\.grad\s*(:|and|or)"
)
_DDP_REDUCTION = "Expected to have finished reduction in the prior iteration"
# Runs the enclosed torch calls without any TorchFunctionMode or subclass __torch_function__.
_no_torch_function = torch._C.DisableTorchFunction
_NOT_DIFFERENTIABLE = ("does not require grad", "does not have a grad_fn")
_UNUSED_INPUT = "appears to not have been used in the graph"


def _model_site(where: CallSite | Site | None) -> m.Site | None:
    site = where.site if isinstance(where, CallSite) else where
    if site is None:
        return None
    return m.Site(display_path(site.file), site.line, site.function, site.code)


def _model_stack(where: CallSite | Site | None) -> list[m.Site]:
    if isinstance(where, CallSite):
        stack = [s for s in (_model_site(x) for x in where.stack) if s is not None]
        if where.via is not None and not where.via.file.startswith(_TORCH_DIR):
            # A framework's frame between the user's line and the event is worth showing; torch's own is not.
            via = _model_site(where.via)
            if via is not None:
                stack.insert(1, via)
        return stack
    s = _model_site(where)
    return [s] if s is not None else []


# The sessions started and not yet stopped, innermost last (see ``active_session``).
_ACTIVE: list[Session] = []


def active_session() -> Session | None:
    """The session instrumenting this process now, if any (``gradcheck run``, an outer ``watch``)."""
    return next((s for s in reversed(_ACTIVE) if s.pid == os.getpid()), None)


def _forget(session: Session) -> None:
    if session in _ACTIVE:
        _ACTIVE.remove(session)


class Session:
    """One instrumented run. ``start()``/``stop()`` (or ``with``) install and restore everything."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.tracker = Tracker()
        self.mode = CutTracker(self.tracker)
        self.patches = PatchSet()
        self.counting = PatchSet()  # the backward entry points: kept after the check window
        self._retired = False
        self.pid = os.getpid()
        self._active = False
        self._in_backward = False
        self._ran: dict[int, nn.Module] = {}
        self.optim = optim.OptimizerWatch()
        self._names: Names | None = None
        self.backward_calls = 0
        self.steps_checked = 0
        # Time spent checking backward calls, autograd's own work excluded (benchmarks/ reads it).
        self.analysis_seconds = 0.0
        self._step_suspended = False  # the tracker is suspended for an optimizer.step()
        self._in_closure = False  # running the closure passed to optimizer.step()
        self.steps: list[m.Step] = []
        self.findings: dict[tuple[Any, ...], m.Finding] = {}
        self.notes: list[str] = []
        self._jit_noted = False
        self.internal_errors: list[str] = []
        self._patterns: dict[str, set[str]] | None = None  # config name lists resolved to names
        self._stop_pending = False
        # Gradients lost without an identified op, waiting for the probe at the next checked backward.
        self._pending: dict[str, tuple[str, int]] = {}
        # (name, "zero" | "none") -> what explained it at a probed step
        self._explained: dict[tuple[str, str], Raw] = {}
        self._last_checked = -1

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Session:
        install(self, self.patches, self.counting)
        optim.install(self.optim, self.patches, self._on_step, self._on_step_done)
        self.tracker.on_grad_cleared = self.optim.wiped
        self.tracker.stamp = self.config.checks_step(0)  # the first checked backward
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._reattribute_warning
        # torch.compile warns about global module hooks: those are ours, not the user's business.
        warnings.filterwarnings("ignore", message=_COMPILE_HOOK_WARNING)
        self._filter = warnings.filters[0]
        self.mode.__enter__()
        self._active = True
        _ACTIVE.append(self)
        return self

    def _reattribute_warning(
        self,
        message: Any,
        category: Any,
        filename: str,
        lineno: int,
        file: Any = None,
        line: Any = None,
    ) -> None:
        # A warning torch raises in C while our TorchFunctionMode is calling the op would name our
        # handler's line; python would name the line that called the op. Point there instead.
        if filename.startswith(_GRADCHECK_DIR) or filename.endswith(_OVERRIDES_SUFFIX):
            frame = sys._getframe(1)
            while frame is not None and (
                frame.f_code.co_filename.startswith(_GRADCHECK_DIR)
                or frame.f_code.co_filename.endswith(_OVERRIDES_SUFFIX)
                or frame.f_globals.get("__name__") == "warnings"
            ):
                frame = frame.f_back  # type: ignore[assignment]
            if frame is not None:
                filename, lineno, line = frame.f_code.co_filename, frame.f_lineno, None
        self._showwarning(message, category, filename, lineno, file, line)

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        _forget(self)
        try:
            self._retire()
        finally:
            self.counting.restore()
        self._process_grad_reads()

    def _retire(self) -> None:
        """Switch the instrumentation off — not just idle — once the check window is over.

        Only the backward entry points stay (to count the calls). Called at the first backward
        after the window: no TorchFunctionMode handler and no hook is on the stack then.
        """
        if self._retired:
            return
        self._retired = True
        try:
            top = torch._C._len_torch_function_stack() - 1
            if top >= 0 and torch._C._get_function_stack_at(top) is self.mode:
                self.mode.__exit__(None, None, None)
            else:  # the script pushed a mode of its own on top of ours: leave ours idle
                self.tracker.suspended = True
        finally:
            self.patches.restore()
            if warnings.showwarning == self._reattribute_warning:
                warnings.showwarning = self._showwarning
            with contextlib.suppress(ValueError):
                warnings.filters.remove(self._filter)
                getattr(warnings, "_filters_mutated", lambda: None)()
            self.tracker.new_generation()
            self._ran.clear()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Engine protocol (called by the patches) -------------------------------------------------

    def module_ran(self, module: nn.Module) -> None:
        if self._step_suspended and not self._in_closure:  # a step() raised: no post-hook ran
            self._on_step_done()
        if not self._in_backward:
            self._ran[id(module)] = module
            self.tracker.modules.append(module)

    def module_done(self, module: nn.Module) -> None:
        stack = self.tracker.modules
        while stack:
            if stack.pop() is module:
                break

    def _checks(self, index: int) -> bool:
        """Is this backward call checked: in the window, or the one right after it when a lost
        gradient still waits for its probe."""
        return self.config.checks_step(index) or (
            bool(self._pending) and index == self._last_checked + 1
        )

    def _on_step(self, optimizer: torch.optim.Optimizer, closure: Any = None) -> Any:
        """optimizer.step() is about to run (torch's global pre-hook): check what it will update.

        Returns the closure to run instead of the user's one, if any.
        """
        if not self._active or self._in_backward or os.getpid() != self.pid:
            return None
        last = self.backward_calls - 1
        if self.config.checks_step(max(last, 0)):
            with self._guard("checking optimizer.step()"):
                names = self._names or self._build_names()
                for raw in self.optim.check_step(
                    optimizer, names, self.tracker.rg_off, closure=closure is not None
                ):
                    self._add(raw, last)
        if self._stop_pending:
            self._stop()
        if self.tracker.suspended:
            return None
        # Nothing inside an optimizer's update is the user's to blame (LBFGS's `p.new()` and
        # `view_as` under no_grad looked like cuts, and tagged the parameters they were added
        # into): the mode lets its ops through untouched, except inside a closure, which runs the
        # user's forward.
        tracker = self.tracker
        tracker.suspended = self._step_suspended = True
        if closure is None:
            return None

        def user_closure(*args: Any, **kwargs: Any) -> Any:
            tracker.suspended, self._in_closure = False, True
            try:
                return closure(*args, **kwargs)
            finally:
                tracker.suspended, self._in_closure = self._step_suspended, False

        return user_closure

    def _on_step_done(self) -> None:
        if self._step_suspended:
            self.tracker.suspended = self._step_suspended = False

    def _stop(self) -> None:
        n = self.config.stop_after
        raise GradcheckExit(
            0, f"stopped after {n} checked backward call{'s' if n != 1 else ''} (stop_after)", True
        )

    def _resolve(self, names: Names) -> dict[str, set[str]]:
        """The config's name lists as sets of reported names (an unmatched entry ends the run)."""
        if self._patterns is not None:
            return self._patterns
        canonical = self._named_tensors(names)
        aliases: dict[str, str] = {}
        for name in canonical:
            aliases[name] = name
            # `model[2].bias` is how the user indexes; named_parameters() says `model.2.bias`.
            aliases.setdefault(re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", name), name)
        patterns: dict[str, set[str]] = {}
        for key in ("expect", "allow_none", "allow_zero", "frozen"):
            entries = getattr(self.config, key)
            matched, unmatched = match_names(entries, list(aliases))
            if unmatched:
                error = unmatched_error(
                    self.config, key, unmatched[0], entries.index(unmatched[0]), list(canonical)
                )
                raise GradcheckExit(EXIT_USAGE, error.message)
            patterns[key] = {aliases[n] for hits in matched.values() for n in hits}
        self._patterns = patterns
        return patterns

    @staticmethod
    def _named_tensors(names: Names) -> dict[str, torch.Tensor]:
        found = {qual: names.params[key] for key, qual in names.param_name.items()}
        found.update({name: t for name, t in names.leaves.values()})
        found.update({u.name: u.tensor for u in names.unregistered.values()})
        return found

    def run_backward(
        self, api: str, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self._in_backward or not self._active or os.getpid() != self.pid:
            return call(*args, **kwargs)
        if self._stop_pending:
            self._stop()
        caller = sys._getframe(2)
        if caller.f_code.co_filename.startswith(_TORCH_DIR):
            return call(*args, **kwargs)  # torch calling autograd itself (e.g. checkpointing)
        index = self.backward_calls
        self.backward_calls += 1
        if self._retired or not self._checks(index):
            self._retire()
            self._in_backward = True  # Tensor.backward re-enters through torch.autograd.backward
            try:
                return call(*args, **kwargs)
            finally:
                self._in_backward = False
        tr = self.tracker
        self._in_backward = True
        tr.suspended = True
        gc_was_on = gc.isenabled()
        # The walk wraps every autograd node in a Python object; on a 100k-node graph the cyclic
        # collector's passes over them cost more than the walk itself. They are freed by
        # reference counting when the check ends, so collection is paused until then.
        gc.disable()
        started = time.perf_counter()
        in_autograd = 0.0

        def autograd(*a: Any, **k: Any) -> Any:
            nonlocal in_autograd
            t0 = time.perf_counter()
            try:
                return call(*a, **k)
            finally:
                in_autograd += time.perf_counter() - t0

        try:
            result = self._checked_backward(index, api, autograd, args, kwargs)
            stop_after = self.config.stop_after
            if stop_after and self.steps_checked >= stop_after:
                self._stop_pending = True  # at the next step() (after its checks) or backward()
            return result
        finally:
            self.analysis_seconds += time.perf_counter() - started - in_autograd
            if gc_was_on:
                gc.enable()
            self._in_backward = False
            tr.suspended = False
            tr.backward_calls = self.backward_calls
            tr.new_generation()
            self._last_checked = index
            # Stamp op sites for the first checked backward (info on partly dead layers) and for
            # one that will carry the zero-gradient probe.
            tr.stamp = self._checks(self.backward_calls) and bool(self._pending)
            self._ran.clear()

    # -- the check -------------------------------------------------------------------------------

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Our analysis must never break the user's script: an internal error becomes a note."""
        try:
            yield
        except Exception as e:
            note = f"while {doing}: {type(e).__name__}: {e}"
            if note not in self.internal_errors:
                self.internal_errors.append(note)

    def _checked_backward(
        self, index: int, api: str, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self.steps_checked += 1
        prepared = None
        # Our own tensor calls skip the TorchFunctionMode (it is suspended anyway; this saves
        # its dispatch, a few thousand calls per check on a model with a thousand parameters).
        with self._guard("preparing to check a backward()"), _no_torch_function():
            prepared = self._prepare(index, api, args, kwargs)
        if prepared is None:
            return call(*args, **kwargs)
        losses, inputs, where, walk, loss_cuts, names, step, probe = prepared
        with self._guard("preparing to check a backward()"):
            unseen = _grad_marks(names, walk)
        try:
            result = call(*args, **kwargs)
        except RuntimeError as e:
            if probe is not None:
                probe.remove()
            text = str(e)
            with self._guard("diagnosing a failed backward()"), _no_torch_function():
                if any(s in text for s in _NOT_DIFFERENTIABLE):
                    self._not_differentiable(e, index, names, loss_cuts, where)
                elif _UNUSED_INPUT in text and inputs:
                    self._check(
                        index, api, losses, inputs, walk, names, loss_cuts, where, step, exc=e
                    )
            self._record_step(step)
            raise
        if probe is not None:
            probe.remove()
        with self._guard("checking a backward()"), _no_torch_function():
            _reached_unseen(names, walk, unseen)
            self.optim.after_backward(walk.leaves)
            if probe is not None:
                probe.resolve()
            self._check(
                index, api, losses, inputs, walk, names, loss_cuts, where, step, probe=probe
            )
        self._record_step(step)
        return result

    def _prepare(
        self, index: int, api: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """Everything read before autograd runs: the graph, the cuts that fed the loss, the names."""
        losses, inputs = _split_args(api, args, kwargs)
        where = capture()
        walk = walk_graph([t.grad_fn for t in losses])
        for t in losses:
            if t.grad_fn is None and t.requires_grad:
                walk.leaves[id(t)] = t
        tags: frozenset[int] = frozenset()
        for t in losses:
            tags |= self.tracker.tags.get(t) or frozenset()
        loss_cuts = self.tracker.tags_of(tags)
        names = self._build_names()
        step = m.Step(index, api, _model_site(where), _loss_info(losses[0]) if losses else None)
        # The probe hooks every node: always affordable on a small graph, otherwise only on demand.
        small = self.steps_checked == 1 and len(walk.nodes) <= _PROBE_FIRST_NODES
        probe = zeros.attach(walk) if (self._pending or small) else None
        return losses, inputs, where, walk, loss_cuts, names, step, probe

    def _check(
        self,
        index: int,
        api: str,
        losses: list[torch.Tensor],
        inputs: list[torch.Tensor] | None,
        walk: Any,
        names: Names,
        loss_cuts: list[Any],
        where: CallSite | None,
        step: m.Step,
        exc: BaseException | None = None,
        probe: zeros.Probe | None = None,
    ) -> None:
        ctx = Context(
            api=api,
            losses=losses,
            walk=walk,
            names=names,
            loss_cuts=loss_cuts,
            tracker=self.tracker,
            ran_modules=set(self._ran),
            optimizer_groups=self._optimizer_groups(names),
            explicit_inputs=inputs,
        )
        patterns = self._resolve(names) if self._has_patterns else None
        tensors = self._named_tensors(names) if patterns else {}
        if patterns:
            ctx.expect_ids = {id(tensors[n]) for n in patterns["expect"] if n in tensors}
        result = diagnose(ctx)
        if inputs is None:
            result.findings += self._zero_findings(result, walk, probe, losses, names, step)
        else:
            step.checked += [m.Checked(name, state) for name, state, _ in result.checked]
        if patterns:
            result.findings = self._apply_patterns(result.findings, patterns, tensors, walk, where)
        for raw in result.findings:
            finding = self._add(raw, index)
            if exc is not None:
                exc.add_note(
                    f"gradcheck: {', '.join(raw.names)}: {raw.message} ({finding.site.display if finding.site else 'unknown site'})"
                )

    def _zero_findings(
        self,
        result: Any,
        walk: Any,
        probe: zeros.Probe | None,
        losses: list[torch.Tensor],
        names: Names,
        step: m.Step,
    ) -> list[Raw]:
        """All-zero (or, inside the graph, missing) gradients with the op that killed them, and
        partly dead layers (info).

        Hooking every node costs more than the backward itself, so the probe is attached only to
        the checked backward after one that showed such a gradient (they are structural: a dead
        ReLU, a zero mask); until then the parameter is pending.
        """
        found: list[Raw] = []
        attributor: zeros.Attributor | None = None

        def attribute() -> zeros.Attributor:
            nonlocal attributor
            if attributor is None:
                starts = [x.grad_fn for x in losses]
                attributor = zeros.Attributor(walk, probe or zeros.Probe(), starts, self.tracker)
            return attributor

        record_norms = len(self.steps) < _MAX_STEP_RECORDS
        grads = [
            t.grad if (t is not None and state == "ok") else None for _, state, t in result.checked
        ]
        norms = zeros.grad_norms(grads)
        deads = zeros.dead_fractions(grads)
        atol = self.config.zero_atol
        for (name, state, t), grad, grad_norm, dead_rows in zip(
            result.checked, grads, norms, deads, strict=True
        ):
            norm = dead = None
            lost = None
            if state == "ok" and t is not None and grad is None:
                state = lost = "none"  # in the graph, yet no gradient arrived
            elif grad is not None and zeros.is_zero(grad, grad_norm or 0.0, atol):
                state = lost = "zero"
            if lost is not None and t is not None:
                known = self._explained.get((name, lost))
                if probe is None and known is not None:
                    # Lost the same way as at an earlier probed step: the same finding, one more
                    # step, and no probe (hooking every node) again.
                    found.append(dataclasses.replace(known, names=[name]))
                elif probe is None:
                    self._pending[name] = (lost, step.index)
                else:
                    culprit = attribute().culprit(t)
                    raw = (
                        self._culprit_raw(culprit, name, names, lost)
                        if culprit is not None
                        else _unattributed(
                            name, lost, "no single op on its path could be identified"
                        )
                    )
                    self._explained[(name, lost)] = dataclasses.replace(
                        raw, names=[name], earlier_steps=[]
                    )
                    pending = self._pending.pop(name, None)
                    if pending is not None and pending[0] == lost:
                        raw.earlier_steps.append(pending[1])
                    found.append(raw)
            elif grad is not None:
                dead = dead_rows
                raw = self._dead_units(attribute(), t, name, dead, names) if dead else None
                if raw is None:
                    dead = None  # zero rows with no ReLU behind them: an embedding's unused tokens
                elif raw.where is not None or not self._reported_dead(name):
                    found.append(raw)  # (ops are stamped on some checked steps only)
            if grad_norm is not None and record_norms:
                norm = grad_norm
            step.checked.append(m.Checked(name, state, norm, dead))
        return found

    def _reported_dead(self, name: str) -> bool:
        return any(
            f.severity == "info" and f.kind == "zero_grad_flow" and name in f.parameters
            for f in self.findings.values()
        )

    def _culprit_raw(self, c: zeros.Culprit, name: str, names: Names, lost: str) -> Raw:
        message = self._with_module(c.message, c.module, names)
        if c.zeroed is not None:
            message = message.replace("{operand}", f"`{names.name_of(c.zeroed) or 'a tensor'}`")
        related = [c.related] if c.related is not None else []
        return Raw(c.kind, c.site, [name], message, grad_state=lost, related=related, hint=c.hint)

    def _dead_units(
        self, attributor: zeros.Attributor, t: torch.Tensor, name: str, dead: float, names: Names
    ) -> Raw | None:
        """Info on a layer with some dead ReLU units (None when no ReLU-like op is behind it)."""
        relu = attributor.relu_near(t)
        if relu is None:
            return None
        site, module = zeros.stamp_of(relu)
        owner = name.rsplit(".", 1)[0]
        message = self._with_module(
            f"{dead:.0%} of the units of `{owner}` received zero gradient (dead ReLUs)",
            module,
            names,
        )
        return Raw("zero_grad_flow", site, [name], message, grad_state="zero", severity="info")

    @property
    def _has_patterns(self) -> bool:
        c = self.config
        return bool(c.expect or c.allow_none or c.allow_zero or c.frozen)

    def _apply_patterns(
        self,
        findings: list[Raw],
        patterns: dict[str, set[str]],
        tensors: dict[str, torch.Tensor],
        walk: Any,
        where: CallSite | None,
    ) -> list[Raw]:
        """``allow_none`` / ``allow_zero`` exceptions, and ``frozen`` tensors that still learn."""
        kept: list[Raw] = []
        for raw in findings:
            if raw.kind == "requires_grad_false" and raw.severity == "info":
                raw.names = [n for n in raw.names if n not in patterns["frozen"]]
                if raw.names:
                    kept.append(raw)
                continue
            allowed = patterns["allow_zero"] if raw.grad_state == "zero" else patterns["allow_none"]
            if raw.grad_state in ("none", "zero", "raised") and allowed and raw.names:
                raw.names = [n for n in raw.names if n not in allowed]
                if not raw.names:
                    continue
            kept.append(raw)
        thawed = [
            n
            for n in sorted(patterns["frozen"])
            if tensors[n].requires_grad or id(tensors[n]) in walk.leaves
        ]
        if thawed:
            kept.append(
                Raw(
                    "not_frozen",
                    where,
                    thawed,
                    f"listed under `frozen` ({self.config.where('frozen') or 'config'}) but still requires grad "
                    "and receives a gradient: the freeze did not take effect",
                    grad_state="present",
                )
            )
        return kept

    @staticmethod
    def _with_module(message: str, module: Any, names: Names) -> str:
        # Only a leaf module (nn.ReLU inside a Sequential) says more than the source line does.
        if module is None or next(module.children(), None) is not None:
            return message
        mod_name = names.module_name(module)
        return f"{message} [in `{mod_name}` ({type(module).__name__})]" if mod_name else message

    def _not_differentiable(
        self, exc: RuntimeError, index: int, names: Names, cuts: list[Any], where: CallSite | None
    ) -> None:
        frozen_site = None
        if not cuts:
            for root in names.roots:
                for p in root.module.parameters():
                    site = self.tracker.rg_off.get(p)
                    if site is not None:
                        frozen_site = site
                        break
                if frozen_site is not None:
                    break
        site, text = not_differentiable_note(cuts, frozen_site)
        cut_names: list[str] = []
        for cut in cuts[:1]:
            for key, t in leaves_under(cut.roots.values()).items():
                name = names.name_of(t)
                if name is not None and key not in {id(x) for x in ()}:
                    cut_names.append(name)
        raw = Raw("loss_not_differentiable", site or where, cut_names, text, grad_state="raised")
        finding = self._add(raw, index)
        loc = f" at {finding.site.display}: `{finding.site.code}`" if finding.site else ""
        exc.add_note(f"gradcheck: {text}{loc}")

    def _add(self, raw: Raw, index: int) -> m.Finding:
        rule = rule_for(raw.kind)
        site = _model_site(raw.where)
        severity = raw.severity or rule.severity
        # One finding per kind, line and severity; without a line, per message too (an
        # unattributed error must not fold into an info finding, or hide in it), and per module
        # for unused ones (two library models called on one line each have their own).
        key = (
            raw.kind,
            site.file if site else None,
            site.line if site else None,
            severity,
            None if site and raw.kind != "unused_parameter" else raw.message,
        )
        finding = self.findings.get(key)
        if finding is None:
            finding = m.Finding(
                id=rule.id,
                kind=raw.kind,
                severity=severity,
                grad_state=raw.grad_state,
                parameters=[],
                site=site,
                stack=_model_stack(raw.where),
                steps=[],
                message=raw.message,
                hint=raw.hint or rule.hint,
                related=[x for x in (_model_site(r) for r in raw.related) if x is not None],
            )
            self.findings[key] = finding
        for name in raw.names:
            if name not in finding.parameters:
                finding.parameters.append(name)
        for step in (*raw.earlier_steps, index):
            if step >= 0 and step not in finding.steps and len(finding.steps) < _MAX_STEP_INDICES:
                finding.steps.append(step)
        finding.steps.sort()
        return finding

    def _record_step(self, step: m.Step) -> None:
        if len(self.steps) < _MAX_STEP_RECORDS:
            self.steps.append(step)

    def _build_names(self) -> Names:
        frame = nearest_user_frame()
        main = sys.modules.get("__main__")
        main_globals = vars(main) if main is not None else None
        names = build_names(frame_namespaces(frame, main_globals), self._ran.values())
        del frame
        self._names = names
        self._note_jit(names)
        return names

    def _optimizer_groups(self, names: Names) -> list[set[int]]:
        """Parameter ids of each optimizer: those built under watch, and any found in scope."""
        optimizers = [opt for opt in (w.ref() for w in self.optim.live()) if opt is not None]
        optimizers += [opt for opt in names.optimizers if all(opt is not o for o in optimizers)]
        return [{id(p) for g in opt.param_groups for p in g["params"]} for opt in optimizers]

    # -- after the run ---------------------------------------------------------------------------

    def _process_grad_reads(self) -> None:
        """The user read ``.grad`` and got None: say why, if we can."""
        reads = self.tracker.grad_reads
        if not reads:
            return
        names = self._names
        seen: set[int] = set()
        for t, where, variable in reads:
            if id(t) in seen or _NONE_TEST.search(where.site.code):
                continue
            seen.add(id(t))
            name = (names.name_of(t) if names else None) or variable or f"<tensor {tuple(t.shape)}>"
            if not t.requires_grad:
                off = self.tracker.rg_off.get(t)
                site = off or self.tracker.born.get(t) or where
                frozen = [name]
                if off is not None and names is not None:
                    # Everything the same line froze is part of the same finding.
                    frozen += [
                        n
                        for key, n in names.param_name.items()
                        if n != name and self.tracker.rg_off.get(names.tensor(key)) is off
                    ]
                self._add(
                    Raw(
                        "requires_grad_false",
                        site,
                        frozen,
                        f"`.grad` was read at {where.site.display} but the tensor does not require grad",
                    ),
                    -1,
                )
            elif t.grad_fn is not None:
                site = self.tracker.made_from.get(t) or where
                self._add(
                    Raw(
                        "non_leaf",
                        site,
                        [name],
                        f"`.grad` was read at {where.site.display}, but the tensor is not a leaf: its gradient goes to the tensor it was made from",
                    ),
                    -1,
                )
        reads.clear()

    def _note_jit(self, names: Names) -> None:
        if self._jit_noted or os.environ.get("PYTORCH_JIT", "1") == "0":
            return
        for root in names.roots:
            if any(isinstance(mod, torch.jit.ScriptModule) for mod in root.module.modules()):
                self._jit_noted = True
                self.notes.append(
                    f"{root.name} contains torch.jit.script code: operations inside it are not visible to gradcheck "
                    "(a cut there is reported without its line); run with PYTORCH_JIT=0 to see them"
                )
                return

    def annotate(self, exc: BaseException) -> None:
        """Add what we know to the script's fatal exception (printed right after this)."""
        if _DDP_REDUCTION in str(exc):
            missing = [
                f
                for f in self.findings.values()
                if f.grad_state in ("none", "raised") and f.parameters
            ]
            if missing:
                parts = "; ".join(
                    f"{', '.join(f.parameters[:6])} ({f.kind} at {f.site.display if f.site else '?'})"
                    for f in missing[:4]
                )
                exc.add_note(
                    "gradcheck: DDP could not finish the gradient reduction because these parameters got no "
                    f"gradient in the previous iteration: {parts}. Fix the cause, or pass "
                    "find_unused_parameters=True to DistributedDataParallel."
                )

    def _flush_pending(self) -> None:
        for name, (lost, index) in self._pending.items():
            why = "it was found at the last checked backward, so the op could not be traced (check one more: --steps)"
            self._add(_unattributed(name, lost, why), index)
        self._pending.clear()

    def build_report(self, script: m.ScriptInfo) -> m.Report:
        self._flush_pending()
        return m.Report(
            tool={"name": "gradcheck", "version": __version__},
            environment={
                "python": platform.python_version(),
                "torch": torch.__version__,
                "platform": platform.platform(),
            },
            script=script,
            config=self.config.to_dict(),
            steps=list(self.steps),
            findings=sorted(
                (f for f in self.findings.values() if not self.config.ignores(f.kind)),
                key=_finding_order,
            ),
            notes=list(self.notes),
            internal_errors=[
                *self.internal_errors,
                *(f"in the op tracker: {e}" for e in self.tracker.errors),
            ],
            steps_seen=self.backward_calls,
            steps_checked=self.steps_checked,
        )


_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def _finding_order(f: m.Finding) -> tuple[int, int, str, int]:
    return (
        _SEVERITY_ORDER.get(f.severity, 3),
        f.steps[0] if f.steps else 1 << 30,
        f.site.file if f.site else "",
        f.site.line if f.site else 0,
    )


def _unattributed(name: str, lost: str, why: str) -> Raw:
    what = (
        "is all zero"
        if lost == "zero"
        else "never arrived, although the tensor is in the loss's graph"
    )
    return Raw("zero_grad_flow", None, [name], f"the gradient {what}; {why}", grad_state=lost)


def _grad_marks(names: Names, walk: Any) -> dict[int, tuple[int, int]]:
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
    if marks and not any(type(n).__name__ == _CHECKPOINT_NODE for n in walk.nodes.values()):
        return {}
    return marks


def _reached_unseen(names: Names, walk: Any, marks: dict[int, tuple[int, int]]) -> None:
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


@contextmanager
def watch(config: Config | None = None) -> Iterator[Session]:
    """Instrument the code in the ``with`` block; ``session.build_report(...)`` afterwards."""
    session = Session(config)
    session.start()
    try:
        yield session
    finally:
        session.stop()
