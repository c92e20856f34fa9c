"""Everything gradcheck installs into torch and Python for a run, and its removal.

The patches, the op tracker's TorchFunctionMode and the warning re-attribution are saved and set
in :meth:`Instruments.install` and restored in :meth:`Instruments.retire` (the check window is
over: only the backward entry points stay, to count calls) and :meth:`Instruments.remove`.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from gradcheck_cli import optim
from gradcheck_cli.patches import Engine, ModuleHooks, PatchSet, install
from gradcheck_cli.sites import is_own_file, skip_own_frames
from gradcheck_cli.tracking import CutTracker, Tracker

_COMPILE_HOOK_WARNING = r"Using `torch.compile\(module\)` when there are global hooks"


class Instruments:
    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.mode = CutTracker(tracker)
        self.patches = PatchSet()
        self.counting = PatchSet()  # the backward entry points: kept after the check window
        self.retired = False
        self._paused = False  # the mode is off the stack for torch's own optimizer code
        self.dormant = False  # the mode is off the stack between clean checked steps (sleep())
        self.module_hooks: ModuleHooks | None = None
        self._showwarning: Any = None
        self._filter: Any = None

    def install(
        self,
        engine: Engine,
        watch: optim.OptimizerWatch,
        on_optimizer_step: Callable[[torch.optim.Optimizer, Any], Any],
        on_optimizer_step_done: Callable[[], None],
    ) -> None:
        self.module_hooks = install(engine, self.patches, self.counting)
        optim.install(watch, self.patches, on_optimizer_step, on_optimizer_step_done, self.mode_off)
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._reattribute_warning
        # torch.compile warns about global module hooks: those are ours, not the user's business.
        warnings.filterwarnings("ignore", message=_COMPILE_HOOK_WARNING)
        self._filter = warnings.filters[0]
        self.mode.__enter__()

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
        if is_own_file(filename):
            frame = skip_own_frames(
                sys._getframe(1), also=lambda f: f.f_globals.get("__name__") == "warnings"
            )
            if frame is not None:
                filename, lineno, line = frame.f_code.co_filename, frame.f_lineno, None
        self._showwarning(message, category, filename, lineno, file, line)

    def pause_mode(self) -> bool:
        """Take the mode off the torch-function stack while torch's optimizer code runs.

        A suspended mode still costs a round trip into Python for every op and every ``p.grad``
        read; ``Adam.step()`` makes a dozen per parameter (1,400 of the 1,700 calls of a small
        transformer's step). Only when the mode is on top (a mode the script pushed stays put,
        ours then stays suspended). Returns whether it was taken off.
        """
        if self.retired or self._paused or self.dormant:
            return False
        top = torch._C._len_torch_function_stack() - 1
        if top < 0 or torch._C._get_function_stack_at(top) is not self.mode:
            return False
        torch._C._pop_torch_function_stack()
        self._paused = True
        return True

    def resume_mode(self) -> None:
        if self._paused:
            self._paused = False
            torch._C._push_on_torch_function_stack(self.mode)

    def sleep(self, hooks: bool = True) -> bool:
        """Take the mode off the stack until :meth:`wake`: the checked steps after a clean one
        repeat its ops, and a round trip into Python per op is most of what they would cost.
        ``hooks``: the module hooks too. Returns whether it went to sleep (not when the script's
        own mode sits on top of ours)."""
        if self.retired or self.dormant:
            return False
        if not self._paused and not self.pause_mode():
            return False
        self._paused = False  # (off the stack now: resume_mode() must not put it back)
        self.dormant = True
        if hooks and self.module_hooks is not None:
            self.module_hooks.off()
        return True

    def wake(self) -> None:
        if self.dormant and not self.retired:
            self.dormant = False
            torch._C._push_on_torch_function_stack(self.mode)
            if self.module_hooks is not None:
                self.module_hooks.on()

    @contextlib.contextmanager
    def mode_off(self) -> Iterator[None]:
        paused = self.pause_mode()
        try:
            yield
        finally:
            if paused:
                self.resume_mode()

    def retire(self) -> None:
        """Switch the instrumentation off — not just idle — once the check window is over.

        Only the backward entry points stay (to count the calls). Called at the first backward
        call after the window: no TorchFunctionMode handler and no hook is on the stack then.
        """
        if self.retired:
            return
        self.retired = True
        try:
            top = torch._C._len_torch_function_stack() - 1
            if self._paused or self.dormant:  # already off the stack
                self._paused = self.dormant = False
            elif top >= 0 and torch._C._get_function_stack_at(top) is self.mode:
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

    def remove(self) -> None:
        """Restore everything, the counting entry points included."""
        try:
            self.retire()
        finally:
            self.counting.restore()
