"""The front object of a run: :class:`Session` builds the parts and routes the events to them.

``with gradcheck_cli.watch() as session: ...`` works anywhere (a notebook, a pytest fixture, a
training framework's callback); ``gradcheck run`` wraps the script's execution in the same thing.

The parts, each with one job: :class:`~gradcheck_cli.instruments.Instruments` (what is installed
and its removal), :class:`~gradcheck_cli.optim.OptimizerWatch` (optimizer construction and steps),
:class:`~gradcheck_cli.name_patterns.NamePatterns` (the config's name lists),
:class:`~gradcheck_cli.zero_check.ZeroCheck` (all-zero gradients and their probe),
:class:`~gradcheck_cli.findings.FindingBook` (grouping), and the check of one backward call
(:mod:`gradcheck_cli.backward_check`). Words: a *backward call* is one ``backward()`` /
``autograd.grad()``; the *check window* is the backward calls the config checks; an *optimizer
step* is ``optimizer.step()``.
"""

from __future__ import annotations

import os
import platform
import sys
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from gradcheck_cli import __version__, children, fsdp, optim
from gradcheck_cli import model as m
from gradcheck_cli.backward_check import BackwardCheck
from gradcheck_cli.config import Config
from gradcheck_cli.errors import GradcheckExit
from gradcheck_cli.expectation import Expectations
from gradcheck_cli.findings import FindingBook, Raw
from gradcheck_cli.functorch_guard import in_transform
from gradcheck_cli.grad_reads import explain_grad_reads
from gradcheck_cli.higher_order import GRAD_API, GradCalls
from gradcheck_cli.instruments import Instruments
from gradcheck_cli.name_patterns import NamePatterns, in_model_order, named_tensors
from gradcheck_cli.naming import (
    Names,
    ScopeCache,
    StructureCache,
    build_names,
    frame_namespaces,
)
from gradcheck_cli.routing import Routing
from gradcheck_cli.sites import nearest_user_frame
from gradcheck_cli.tracking import Tracker
from gradcheck_cli.unregistered import UnregisteredCheck
from gradcheck_cli.zero_check import ZeroCheck

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_MAX_STEP_RECORDS = 20
_DDP_REDUCTION = "Expected to have finished reduction in the prior iteration"


# The sessions started and not yet stopped, innermost last (see ``active_session``).
_ACTIVE: list[Session] = []


def active_session() -> Session | None:
    """The session instrumenting this process now, if any (``gradcheck run``, an outer ``watch``)."""
    return next((s for s in reversed(_ACTIVE) if s.pid == os.getpid()), None)


def _forget(session: Session) -> None:
    if session in _ACTIVE:
        _ACTIVE.remove(session)


def _after_fork_in_child() -> None:
    """A forked worker (hogwild): the sessions of the parent become the child's own."""
    for session in list(_ACTIVE):
        if session._active and session.pid != os.getpid():
            session._adopt_child()


_fork_hook_installed = False


def _install_fork_hook() -> None:
    global _fork_hook_installed
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook_installed = True


class Session:
    """One instrumented run. ``start()``/``stop()`` (or ``with``) install and restore everything."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.tracker = Tracker()
        self.instruments = Instruments(self.tracker)
        self.optim = optim.OptimizerWatch()
        self.book = FindingBook()
        self.patterns = NamePatterns(self.config)
        self.zero_check = ZeroCheck(self.tracker, self.book, self.config.zero_atol)
        self.expectations = Expectations()
        self.tracker.held_untrained = self._held_untrained
        self.unregistered = UnregisteredCheck(self.tracker)
        self.routing = Routing(self.book)  # unused modules, decided across the check window
        self.grad_calls = GradCalls()  # what checked autograd.grad calls differentiated
        self.pid = os.getpid()
        self.parent_pid: int | None = None  # set in a forked worker
        self._active = False
        self._in_backward = False
        self._ran: dict[int, nn.Module] = {}  # modules run since the last checked backward call
        self._names: Names | None = None
        self._names_code: Any = None  # the code object of the frame the last names were seen from
        self._structures = StructureCache()
        self._scopes = ScopeCache()
        self.backward_calls = 0
        self.steps_checked = 0  # backward calls checked
        # Time spent checking backward calls, autograd's own work excluded (benchmarks/ reads it).
        self.analysis_seconds = 0.0
        self._in_optimizer_step = False  # the tracker is suspended for an optimizer.step()
        # optimizer -> its size, once all its tensors were stepped
        self._all_stepped: weakref.WeakKeyDictionary[torch.optim.Optimizer, int] = (
            weakref.WeakKeyDictionary()
        )
        self._in_closure = False  # running the closure passed to optimizer.step()
        self.steps: list[m.Step] = []  # records of the first checked backward calls
        self.notes: list[str] = []
        self.devices: set[str] = set()  # where the checked losses lived (the report's header)
        self._jit_noted = False
        self._jit_seen: set[tuple[int, int]] = set()
        self.internal_errors: list[str] = []
        self._stop_pending = False
        self._last_checked = -1
        # The op tracker sleeps between clean checked steps (see _settle_mode): once the loop's
        # first iterations were checked clean, until a check made asleep sees something new
        # (`_woken`: awake for the rest of the run). What such a check found is held (finding,
        # call) for a later check, made awake, to take over; the book's count of serious findings
        # when the last check ended; the optimizers stepped so far; the calls checked asleep that
        # woke it.
        self._held: list[tuple[Raw, int]] = []
        self._clean = True
        self._serious = 0
        self._stepped: set[int] = set()
        self._stepping: int | None = None  # id of the optimizer in step()
        self._woken = False
        self._dormant_calls: set[int] = set()
        # The last check made awake: each expected tensor's (name, state), and its findings
        # that a check made asleep repeats when it sees the same (BackwardCheck).
        self.awake_outcome: tuple[list[tuple[str, str]], list[Raw]] | None = None
        # What the last walk made awake reached of the named tensors, if its graph was big
        # (BackwardCheck: the check before the tracker sleeps compares its .grad marks with it).
        self.walked_reached: frozenset[int] | None = None
        self._grad_api_seen = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Session:
        self.instruments.install(
            self, self.optim, self._on_optimizer_step, self._on_optimizer_step_done
        )
        self.tracker.on_grad_cleared = self.optim.wiped
        self.tracker.stamp = self.config.in_check_window(0)  # the first checked backward call
        self._active = True
        _ACTIVE.append(self)
        _install_fork_hook()
        import multiprocessing.util

        multiprocessing.util.register_after_fork(self, Session._worker_started)
        return self

    def _adopt_child(self) -> None:
        """Right after a fork, in the child: check its backward calls from its first on, and
        leave a report for the parent when ``multiprocessing`` ends the child."""
        self.parent_pid, self.pid = self.pid, os.getpid()
        self.backward_calls = self.steps_checked = 0
        self._last_checked = -1
        self.steps = []
        self.book = self.zero_check.book = FindingBook()
        self.routing = Routing(self.book)
        self._serious, self._held = 0, []
        self.tracker.stamp = self.config.in_check_window(0)

    def _worker_started(self) -> None:
        """In a ``multiprocessing`` child, once its bootstrap has cleared the inherited
        finalizers: write the child's report when it ends."""
        import multiprocessing.util

        if self.parent_pid is not None:
            multiprocessing.util.Finalize(None, self._child_done, exitpriority=100)

    def _child_done(self) -> None:
        try:
            self.stop()
            if self.backward_calls:
                script = m.ScriptInfo(path="<worker process>", argv=[], exit_code=None)
                children.write(self.build_report(script), self.parent_pid)
        except Exception:
            pass  # a worker's exit must never fail because of us

    def stop(self) -> None:
        if not self._active:
            return
        self._active = False
        _forget(self)
        try:
            self._retire()
        finally:
            self.instruments.remove()
        self._release_held()
        with self.guard("deciding skipped modules"):
            self.routing.finish()
        if self.tracker.grad_reads:
            explain_grad_reads(self.tracker, self._names, self.book)
        self.unregistered.flush(self.book)

    def _retire(self) -> None:
        self.instruments.retire()
        self._ran.clear()
        self.grad_calls.returned.clear()  # (they hold graphs alive)
        self.expectations.settle_earlier(False)  # (no check is left to ask about its graph)

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def findings(self) -> list[m.Finding]:
        return self.book.values()

    # -- Engine protocol (called by the patches) -------------------------------------------------

    def module_ran(self, module: nn.Module) -> None:
        if self._in_optimizer_step and not self._in_closure:  # a step() raised: no post-hook ran
            self._on_optimizer_step_done()
        if not self._in_backward:
            self._ran[id(module)] = module
            self.tracker.modules.append(module)
            if self.routing.watching:
                self.routing.module_ran(module)

    def module_done(self, module: nn.Module) -> None:
        stack = self.tracker.modules
        while stack:
            if stack.pop() is module:
                break

    def is_checked(self, call: int) -> bool:
        """Is backward call ``call`` checked: in the check window, or the one right after it when
        a lost gradient still waits for its probe."""
        return self.config.in_check_window(call) or (
            bool(self.zero_check.pending) and call == self._last_checked + 1
        )

    def run_backward(
        self, api: str, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if (
            self._in_backward
            or not self._active
            or os.getpid() != self.pid
            or in_transform()  # torch.func.grad & co. run autograd on their own level
        ):
            return call(*args, **kwargs)
        if self._stop_pending:
            self._stop()
        caller = sys._getframe(2)
        if caller.f_code.co_filename.startswith(_TORCH_DIR):
            # Torch calling autograd itself (checkpointing, torch.func): with our mode active the
            # call re-enters through it, from our own frame, and must not be checked then either.
            self._in_backward = True
            try:
                return call(*args, **kwargs)
            finally:
                self._in_backward = False
        index = self.backward_calls
        self.backward_calls += 1
        if self.instruments.retired or not self.is_checked(index):
            self._retire()
            self._in_backward = True  # Tensor.backward re-enters through torch.autograd.backward
            try:
                return call(*args, **kwargs)
            finally:
                self._in_backward = False
        tr = self.tracker
        self._in_backward = True
        tr.suspended = True
        check = BackwardCheck(self, index, api, call, dormant=self.instruments.dormant)
        try:
            result = check.run(args, kwargs)
            stop_after = self.config.stop_after
            if stop_after and self.steps_checked >= stop_after:
                self._stop_pending = True  # at the next step() (after its checks) or backward()
            return result
        finally:
            self.analysis_seconds += check.analysis_seconds
            self._in_backward = False
            tr.suspended = False
            tr.backward_calls = self.backward_calls
            if not self.grad_calls.keep_generation(api):
                tr.new_generation()
            self._last_checked = index
            # Stamp op sites for a backward call that will carry the zero-gradient probe.
            tr.stamp = self.is_checked(self.backward_calls) and bool(self.zero_check.pending)
            self._ran.clear()
            self._settle_mode(check, api)

    # -- the op tracker between checked steps ----------------------------------------------------

    def _settle_mode(self, check: BackwardCheck, api: str) -> None:
        """After a checked backward call. A check made with the op tracker asleep that saw
        something new wakes it for the rest of the run: the next checks look again, with every
        cut and site recorded, and take over what this one held (a bug at every other step is
        then seen at the next one)."""
        self._grad_api_seen = self._grad_api_seen or api == GRAD_API
        pending = bool(self.zero_check.pending)
        if check.dormant:
            if check.lost:  # (a repeat holds what the check awake held: nothing to take over)
                self._dormant_calls.add(check.index)
            if self._held or pending or check.lost:
                self._wake()
            self._serious = self.book.serious  # (what it repeated is no news)
        elif check.serious or pending:
            self._clean = False

    def _wake(self) -> None:
        self.instruments.wake()
        self.tracker.modules.clear()  # (no hook saw the modules that ran while it slept)
        self._woken = True

    def _release_held(self) -> None:
        """What no later check took over is reported as it was found."""
        held, self._held = self._held, []
        for raw, index in held:
            self.book.add(raw, index)

    def hold(self, raw: Raw, index: int) -> None:
        self._held.append((raw, index))

    def take_over_held(self, raw: Raw) -> None:
        """``raw``, found with the tracker awake, explains what a check made asleep held about
        the same tensors (or, for a finding that names none, of the same kind)."""
        if self._dormant_calls and raw.names:
            for index in self.routing.release(raw.names, self._dormant_calls):
                if index not in raw.earlier_steps:
                    raw.earlier_steps.append(index)
        if not self._held:
            return
        names = set(raw.names)
        kept = []
        for h, index in self._held:
            if (names & set(h.names)) if names else (not h.names and h.kind == raw.kind):
                if index not in raw.earlier_steps:
                    raw.earlier_steps.append(index)
            else:
                kept.append((h, index))
        self._held = kept

    def sleeps_after_step(self) -> bool:
        """Awake: will the tracker sleep at the next optimizer step, if the check of this
        backward call finds nothing? (:meth:`_sleep_or_wake_after_step`)"""
        return (
            not self.instruments.dormant
            and not self._woken
            and self._clean
            and bool(self._stepped)
            and not self._grad_api_seen
            and self.book.serious <= self._serious
        )

    def _sleep_or_wake_after_step(self) -> None:
        """An optimizer step ended. Awake, the tracker sleeps once two whole iterations of the
        loop were checked clean — when an optimizer steps a second time: a GAN's generator step
        came after the discriminator's, what the loop does after its step (a manual update, a
        ``.grad`` read) was seen, and a bug at every other step was met awake. Asleep, a step's
        finding wakes it."""
        instruments, stepping = self.instruments, self._stepping
        if instruments.dormant:
            if self.book.serious > self._serious:
                self._wake()
            return
        if stepping is None or self._woken or not self.steps_checked:
            return
        if not self._clean or self.book.serious > self._serious or self._grad_api_seen:
            # (cuts made before autograd.grad reach the backward call after it: stay awake)
            self._clean = False
            return
        if stepping not in self._stepped:
            self._stepped.add(stepping)
        # (the module hooks stay while a routed group's call site is still unknown)
        elif self.is_checked(self.backward_calls) and instruments.sleep(
            hooks=not self.routing.watching
        ):
            # (asleep, no cut is recorded: only one recorded since the last check can ask
            # whether a value was read from its graph)
            asked = any(c.roots for c in self.tracker.cuts.values())
            self.expectations.settle_earlier(asked)

    def _held_untrained(self, t: torch.Tensor) -> bool:
        """An optimizer holds ``t`` to train it and has not stepped it yet: a freeze now is one
        of tensors the optimizer was built for (a freeze after training began is a schedule)."""
        return id(t) not in self.zero_check.stepped and self.optim.holds(t)

    # -- optimizer steps -------------------------------------------------------------------------

    def _on_optimizer_step(self, optimizer: torch.optim.Optimizer, closure: Any = None) -> Any:
        """optimizer.step() is about to run (torch's global pre-hook): check what it will update.

        Returns the closure to run instead of the user's one, if any.
        """
        if not self._active or self._in_backward or os.getpid() != self.pid:
            return None
        last = self.backward_calls - 1
        self._stepping = id(optimizer)
        self._note_stepped(optimizer)
        if self.config.in_check_window(max(last, 0)):
            with self.guard("checking optimizer.step()"):
                names = self._names or self.build_names()
                raws = self.optim.check_step(
                    optimizer, names, self.tracker.rg_off, closure=closure is not None
                )
                for raw, index in self.expectations.at_step(optimizer, raws, names):
                    self.book.add(raw, index if index >= 0 else last)
        if self._stop_pending:
            self._stop()
        if self.tracker.suspended:
            return None
        # Nothing inside an optimizer's update is the user's to blame (LBFGS's `p.new()` and
        # `view_as` under no_grad looked like cuts, and tagged the parameters they were added
        # into): the mode lets its ops through untouched, except inside a closure, which runs the
        # user's forward.
        tracker, instruments = self.tracker, self.instruments
        tracker.suspended = self._in_optimizer_step = True
        paused = instruments.pause_mode()  # (not even a round trip per op into the mode)
        if closure is None:
            return None

        def user_closure(*args: Any, **kwargs: Any) -> Any:
            tracker.suspended, self._in_closure = False, True
            if paused:
                instruments.resume_mode()
            try:
                return closure(*args, **kwargs)
            finally:
                tracker.suspended, self._in_closure = self._in_optimizer_step, False
                if paused and self._in_optimizer_step:
                    instruments.pause_mode()

        return user_closure

    def _note_stepped(self, optimizer: torch.optim.Optimizer) -> None:
        """Remember the tensors this step updates; once every one of an optimizer's tensors has
        been stepped, only a change in its size (``add_param_group``) is looked at."""
        size = sum(len(g["params"]) for g in optimizer.param_groups)
        if self._all_stepped.get(optimizer) == size:
            return
        stepped = self.zero_check.stepped
        params = [p for g in optimizer.param_groups for p in g["params"]]
        stepped.update(id(p) for p in params if p.grad is not None)
        if all(id(p) in stepped for p in params):
            self._all_stepped[optimizer] = size

    def _on_optimizer_step_done(self) -> None:
        if self._in_optimizer_step:
            self.tracker.suspended = self._in_optimizer_step = False
            self.instruments.resume_mode()
            self._sleep_or_wake_after_step()

    def _stop(self) -> None:
        n = self.config.stop_after
        raise GradcheckExit(
            0, f"stopped after {n} checked backward call{'s' if n != 1 else ''} (stop_after)", True
        )

    # -- shared by the parts ---------------------------------------------------------------------

    @contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Our analysis must never break the user's script: an internal error becomes a note."""
        try:
            yield
            _fault_for_tests(doing)
        except Exception as e:
            note = f"while {doing}: {type(e).__name__}: {e}"
            if note not in self.internal_errors:
                self.internal_errors.append(note)

    def record(self, step: m.Step) -> None:
        if len(self.steps) < _MAX_STEP_RECORDS:
            self.steps.append(step)

    @property
    def records_full(self) -> bool:
        return len(self.steps) >= _MAX_STEP_RECORDS

    def build_names(self, reuse: bool = False) -> Names:
        """Names as seen from the nearest user frame. ``reuse``: the last names stand while the
        same code asks, no module tree changed and no module ran that they do not know (a check
        made while the op tracker sleeps: the step repeats the one named before)."""
        frame = nearest_user_frame()
        code = frame.f_code if frame is not None else None
        last = self._names
        if (
            reuse
            and last is not None
            and self._names_code is code
            and all(key in last.module_path for key in self._ran)
            and all(self._structures.current(r.module) is not None for r in last.roots)
        ):
            del frame
            return last
        main = sys.modules.get("__main__")
        main_globals = vars(main) if main is not None else None
        names = build_names(
            frame_namespaces(frame, main_globals),
            self._ran.values(),
            keep_non_leaf=lambda t: self.tracker.made_from.get(t) is not None,
            structures=self._structures,
            scopes=self._scopes,
        )
        del frame
        self._names, self._names_code = names, code
        self._note_jit(names)
        return names

    def sharded_names(self) -> list[str]:
        """Names of the parameters sharded across ranks (FSDP2), as last named."""
        names = self._names
        return fsdp.sharded_names(names.params, names.name_of) if names is not None else []

    def ran_modules(self) -> set[int]:
        return set(self._ran)

    def optimizer_groups(self, names: Names) -> list[set[int]]:
        """Parameter ids of each optimizer: those built under watch, and any found in scope."""
        return [
            {id(p) for g in opt.param_groups for p in g["params"]}
            for opt in self._optimizers(names)
        ]

    def _optimizers(self, names: Names | None) -> list[torch.optim.Optimizer]:
        optimizers = [opt for opt in (w.ref() for w in self.optim.live()) if opt is not None]
        found = names.optimizers if names is not None else []
        return optimizers + [opt for opt in found if all(opt is not o for o in optimizers)]

    # -- after the run ---------------------------------------------------------------------------

    def _note_jit(self, names: Names) -> None:
        if self._jit_noted or os.environ.get("PYTORCH_JIT", "1") == "0":
            return
        for root in names.roots:
            key = (id(root.module), len(names.module_path))
            if key in self._jit_seen:  # (this tree, unchanged, was looked at already)
                continue
            self._jit_seen.add(key)
            if any(isinstance(mod, torch.jit.ScriptModule) for mod in root.module.modules()):
                self._jit_noted = True
                self.notes.append(
                    f"{root.name} contains torch.jit.script code: operations inside it are not visible to gradcheck "
                    "(a cut there is reported without its line); run with PYTORCH_JIT=0 to see them"
                )
                return

    def annotate(self, exc: BaseException) -> None:
        """Add what we know to the script's fatal exception (printed right after this)."""
        if _DDP_REDUCTION not in str(exc):
            return
        with self.guard("deciding skipped modules"):
            self.routing.finish()  # the script is ending: its window is over
        missing = [f for f in self.findings if f.grad_state in ("none", "raised") and f.parameters]
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

    def _in_model_order(self, findings: list[m.Finding]) -> list[m.Finding]:
        """Each finding's tensors as the model lists them (``weight, bias``)."""
        if self._names is not None:
            order = {n: i for i, n in enumerate(named_tensors(self._names))}
            for f in findings:
                f.parameters = in_model_order(f.parameters, order)
        return findings

    def build_report(self, script: m.ScriptInfo) -> m.Report:
        self.zero_check.flush()
        with self.guard("deciding skipped modules"):
            self.routing.finish()
        report = m.Report(
            tool={"name": "gradcheck", "version": __version__},
            environment={
                "python": platform.python_version(),
                "torch": torch.__version__,
                "platform": platform.platform(),
                **({"device": ", ".join(sorted(self.devices))} if self.devices else {}),
            },
            script=script,
            config=self.config.to_dict(),
            steps=list(self.steps),
            findings=self._in_model_order(self.book.for_report(self.config.ignores)),
            notes=[*self.notes, *self.patterns.notes],
            internal_errors=[
                *self.internal_errors,
                *(f"in the op tracker: {e}" for e in self.tracker.errors),
            ],
            steps_seen=self.backward_calls,
            steps_checked=self.steps_checked,
        )
        return children.merge(report, children.collect(self.pid))


_FAULT_ENV = "GRADCHECK_TEST_FAULT"


def _fault_for_tests(doing: str) -> None:
    """Tests make an internal error happen here: ``GRADCHECK_TEST_FAULT=<words of 'doing'>``."""
    fault = os.environ.get(_FAULT_ENV)
    if fault and fault in doing:
        raise RuntimeError(f"fault injected by {_FAULT_ENV}")


@contextmanager
def watch(config: Config | None = None) -> Iterator[Session]:
    """Instrument the code in the ``with`` block; ``session.build_report(...)`` afterwards."""
    session = Session(config)
    session.start()
    try:
        yield session
    finally:
        session.stop()
