"""Patches on torch: grad-mode managers, backward entry points, ``from_numpy``, module freezing.

Everything the TorchFunctionMode (:mod:`gradcheck_cli.tracking`) cannot see is patched here, and
restored exactly: :class:`PatchSet` remembers whether each name was in the owner's own ``__dict__``
and puts back the very object (or deletes the name) on restore.

Grad-mode managers are patched as *methods on their classes* (``no_grad.__enter__`` …): replacing
the classes would miss ``from torch import no_grad`` done before us and ``torch.autograd.no_grad``.
Method patches catch the ``with`` form, ``@torch.no_grad()``, bare ``@no_grad`` and a plain
``torch.set_grad_enabled(False)``. ``Tensor.backward``, ``torch.autograd.backward`` and
``torch.autograd.grad`` are routed to :meth:`Engine.run_backward`; ``Tensor.backward`` ends in
``torch.autograd.backward`` (and, with the mode active, re-enters itself), so the engine keeps a
re-entrancy guard.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.autograd.grad_mode as grad_mode
from torch.utils.hooks import RemovableHandle

from gradcheck_cli.naming import structure_changed
from gradcheck_cli.sites import CallSite, Site, capture, is_user_file, skip_own_frames
from gradcheck_cli.tracking import Region, Tracker, from_numpy_hook

if TYPE_CHECKING:
    import types

_GRAD_MODE_FILE = os.path.abspath(grad_mode.__file__)
_CONTEXTLIB_SUFFIX = os.path.join("torch", "utils", "_contextlib.py")


class Engine(Protocol):
    tracker: Tracker

    def run_backward(
        self, api: str, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    def module_ran(self, module: torch.nn.Module) -> None: ...

    def module_done(self, module: torch.nn.Module) -> None: ...


class PatchSet:
    """Attribute patches that can be undone exactly, in reverse order."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, bool, Any]] = []
        self._handles: list[RemovableHandle] = []

    def patch(self, owner: Any, name: str, new: Any) -> Any:
        """Replace ``owner.name`` by ``new``; return the original (as attribute lookup gives it)."""
        had = name in vars(owner)
        raw = vars(owner)[name] if had else None
        original = getattr(owner, name)
        setattr(owner, name, new)
        self._undo.append((owner, name, had, raw))
        return original

    def add_handle(self, handle: RemovableHandle | ModuleHooks) -> None:
        self._handles.append(handle)  # type: ignore[arg-type]

    def restore(self) -> None:
        for handle in reversed(self._handles):
            handle.remove()
        self._handles.clear()
        for owner, name, had, raw in reversed(self._undo):
            if had:
                setattr(owner, name, raw)
            else:
                delattr(owner, name)
        self._undo.clear()


def _compiling() -> bool:
    """Inside a region torch.compile is tracing. Dynamo traces our hooks and patched methods
    as part of the user's code: each of them returns at once there (the check folds to a
    constant), so the user's compiled graph is the one it would be without gradcheck."""
    return torch.compiler.is_compiling()


def region_where(manager: str) -> CallSite | None:
    """Where a grad-mode region was opened: the ``with`` line, or for a decorated function the
    decorator line (its immediate caller is torch's ``decorate_context`` wrapper)."""
    import sys

    frame = skip_own_frames(sys._getframe(2))
    if frame is not None and frame.f_code.co_filename.endswith(_CONTEXTLIB_SUFFIX):
        func = frame.f_locals.get("func")
        code = getattr(func, "__code__", None)
        if code is not None and is_user_file(code.co_filename):
            line = _decorator_line(code, manager)
            site = Site(code.co_filename, line, code.co_name)
            outer = capture()
            stack = (site, *(outer.stack if outer else ()))
            return CallSite(site, stack[:6])
    return capture()


def _decorator_line(code: types.CodeType, manager: str) -> int:
    import linecache

    line = code.co_firstlineno
    for n in range(line, line + 20):
        text = linecache.getline(code.co_filename, n).strip()
        if text.startswith("@") and manager in text:
            return n
        if text.startswith(("def ", "async def ")):
            break
    return line


class ModuleHooks:
    """The global forward pre- and post-hooks, which can be taken off (:meth:`off`) while the op
    tracker sleeps: any global hook sends every module call down torch's slow path."""

    def __init__(self, pre: Callable[..., Any], post: Callable[..., Any]) -> None:
        self._pre, self._post = pre, post
        self._handles: list[RemovableHandle] = []

    def on(self) -> None:
        if not self._handles:
            hooks = torch.nn.modules.module
            self._handles = [
                hooks.register_module_forward_pre_hook(self._pre),
                hooks.register_module_forward_hook(self._post, always_call=True),
            ]

    def off(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    remove = off  # (restored with the other patches, like a RemovableHandle)


def install(engine: Engine, patches: PatchSet, counting: PatchSet) -> ModuleHooks:
    """Install every patch. ``counting`` gets the backward entry points: they stay after the check
    window (counting calls costs nothing) while ``patches`` — everything else — is restored then.
    Returns the module hooks (also in ``patches``)."""
    tr = engine.tracker
    _install_grad_modes(tr, patches)
    _install_backward(engine, counting)
    hooks = _install_misc(engine, patches)
    _install_fast_paths(patches)
    return hooks


# Long because each replacement method is a closure over the original it wraps (four managers).
# While the tracker is suspended (torch's optimizer code, our own analysis) no region is opened:
# its ops are not looked at, and the optimizer's `set_grad_enabled` calls restore the mode they
# found. Regions are always closed, whoever opened them.
def _install_grad_modes(tr: Tracker, patches: PatchSet) -> None:
    no_grad, enable_grad = grad_mode.no_grad, grad_mode.enable_grad
    set_grad_enabled, inference_mode = grad_mode.set_grad_enabled, grad_mode.inference_mode

    def entering(cls: type, kind: str, enabled_of: Callable[[Any], bool]) -> None:
        orig = cls.__enter__

        @functools.wraps(orig)
        def __enter__(self: Any) -> Any:
            if _compiling() or tr.suspended:
                return orig(self)
            tr.push_region(Region(kind, enabled_of(self), region_where(kind), self))
            return orig(self)

        patches.patch(cls, "__enter__", __enter__)

    def exiting(cls: type) -> None:
        orig = cls.__exit__

        @functools.wraps(orig)
        def __exit__(self: Any, *exc: Any) -> Any:
            if _compiling():
                return orig(self, *exc)
            tr.pop_region(self)
            return orig(self, *exc)

        patches.patch(cls, "__exit__", __exit__)

    entering(no_grad, "no_grad", lambda self: False)
    entering(enable_grad, "enable_grad", lambda self: True)
    entering(inference_mode, "inference_mode", lambda self: not getattr(self, "mode", True))
    for cls in (no_grad, enable_grad, inference_mode, set_grad_enabled):
        exiting(cls)

    # set_grad_enabled switches the mode in __init__ (so a plain call works); as a `with` statement
    # __enter__ follows at once. Torch's own grad_mode.py calls it too (no_grad.__enter__, clone()):
    # those are the managers above, not new regions.
    sge_init = set_grad_enabled.__init__

    @functools.wraps(sge_init)
    def __init__(self: Any, mode: bool) -> None:
        import sys

        sge_init(self, mode)
        if (
            _compiling()
            or tr.suspended
            or os.path.abspath(sys._getframe(1).f_code.co_filename) == _GRAD_MODE_FILE
        ):
            return
        tr.push_region(
            Region(
                "set_grad_enabled",
                bool(mode),
                region_where("set_grad_enabled"),
                weakref.ref(self),
                plain=True,
            )
        )

    sge_enter = set_grad_enabled.__enter__

    @functools.wraps(sge_enter)
    def sge__enter__(self: Any) -> Any:
        if _compiling() or tr.suspended:
            return sge_enter(self)
        for r in reversed(tr.regions):
            if isinstance(r.token, weakref.ref) and r.token() is self:
                r.token, r.plain = self, False
                break
        else:
            tr.push_region(
                Region("set_grad_enabled", bool(self.mode), region_where("set_grad_enabled"), self)
            )
        return sge_enter(self)

    sge_call = set_grad_enabled.__call__

    @functools.wraps(sge_call)
    def __call__(self: Any, orig_func: Any) -> Any:
        # `@torch.set_grad_enabled(False)` on a def: __init__ switched the mode, __call__ undoes it.
        if _compiling():
            return sge_call(self, orig_func)
        for r in reversed(tr.regions):
            if isinstance(r.token, weakref.ref) and r.token() is self:
                tr.regions.remove(r)
                break
        return sge_call(self, orig_func)

    patches.patch(set_grad_enabled, "__init__", __init__)
    patches.patch(set_grad_enabled, "__enter__", sge__enter__)
    patches.patch(set_grad_enabled, "__call__", __call__)


def _install_backward(engine: Engine, patches: PatchSet) -> None:
    orig_tensor_backward = torch.Tensor.backward

    @functools.wraps(orig_tensor_backward)
    def backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return engine.run_backward("Tensor.backward", orig_tensor_backward, (self, *args), kwargs)

    orig_autograd_backward = torch.autograd.backward

    @functools.wraps(orig_autograd_backward)
    def autograd_backward(*args: Any, **kwargs: Any) -> Any:
        return engine.run_backward("torch.autograd.backward", orig_autograd_backward, args, kwargs)

    orig_grad = torch.autograd.grad

    @functools.wraps(orig_grad)
    def autograd_grad(*args: Any, **kwargs: Any) -> Any:
        return engine.run_backward("torch.autograd.grad", orig_grad, args, kwargs)

    patches.patch(torch.Tensor, "backward", backward)
    patches.patch(torch.autograd, "backward", autograd_backward)
    patches.patch(torch.autograd, "grad", autograd_grad)


def _install_misc(engine: Engine, patches: PatchSet) -> ModuleHooks:
    tr = engine.tracker
    orig_from_numpy = torch.from_numpy

    @functools.wraps(orig_from_numpy)
    def from_numpy(array: Any) -> torch.Tensor:
        out = orig_from_numpy(array)
        from_numpy_hook(tr, array, out)
        return out

    patches.patch(torch, "from_numpy", from_numpy)

    orig_module_rg = torch.nn.Module.requires_grad_

    @functools.wraps(orig_module_rg)
    def module_requires_grad_(self: torch.nn.Module, requires_grad: bool = True) -> torch.nn.Module:
        # One freeze of a whole module is one event at the user's line, even when the TorchFunctionMode
        # is not active (it also sees each parameter's requires_grad_, with the same site).
        if not requires_grad:
            where = capture()
            if where is not None:
                for p in self.parameters():
                    tr.note_freeze(p, where)
        else:
            for p in self.parameters():
                tr.rg_off.discard(p)
        return orig_module_rg(self, requires_grad)

    patches.patch(torch.nn.Module, "requires_grad_", module_requires_grad_)
    _install_structure_watch(patches)

    def pre_hook(module: torch.nn.Module, args: Any) -> None:
        if _compiling():
            return
        engine.module_ran(module)
        # (torch.compile's wrapper, by name: an attribute lookup on any other module would raise
        # and catch an AttributeError at every module call)
        inner = (
            getattr(module, "_orig_mod", None)
            if type(module).__name__ == "OptimizedModule"
            else None
        )
        if isinstance(inner, torch.nn.Module):
            # torch.compile's wrapper: the modules inside run in compiled code, without hooks.
            for sub in inner.modules():
                engine.module_ran(sub)

    def post_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if not _compiling():
            engine.module_done(module)

    hooks = ModuleHooks(pre_hook, post_hook)
    hooks.on()
    patches.add_handle(hooks)
    return hooks


def _install_structure_watch(patches: PatchSet) -> None:
    """Whatever may change a module tree tells the names cache (:class:`naming.StructureCache`):
    torch's registration hooks (submodules, parameters: ``__setattr__``, ``add_module``,
    ``register_parameter``), attribute deletion, conversion (``.to()`` may replace parameters)
    and the container methods that write ``_modules`` directly. Plain attribute assignment is
    seen by the ``Module.__setattr__`` patch (``optim.install``)."""
    hooks = torch.nn.modules.module
    for name in (
        "register_module_module_registration_hook",
        "register_module_parameter_registration_hook",
    ):
        register = getattr(hooks, name, None)
        if register is not None:
            patches.add_handle(register(structure_changed))
    nn = torch.nn
    for cls, method in (
        (nn.Module, "__delattr__"),
        (nn.Module, "_apply"),
        (nn.Sequential, "insert"),
        (nn.ModuleList, "insert"),
        (nn.ModuleDict, "__delitem__"),
        (nn.ModuleDict, "clear"),
    ):
        if method in vars(cls):
            patches.patch(cls, method, _changing_structure(getattr(cls, method)))


def _changing_structure(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        structure_changed()
        return method(*args, **kwargs)

    return wrapper


def _install_fast_paths(patches: PatchSet) -> None:
    """Let ``nn.Transformer*``/``MultiheadAttention`` take their inference fast path.

    Any active TorchFunctionMode makes these modules skip their fused eval-mode kernel, which
    computes in another order: the script's printed evaluation numbers would differ in the last
    digit under gradcheck. That path only runs in eval mode with grad off, where nothing can feed
    a backward, so the call runs with torch-function handling (our mode) off.
    """
    for cls in (
        torch.nn.TransformerEncoder,
        torch.nn.TransformerEncoderLayer,
        torch.nn.MultiheadAttention,
    ):
        patches.patch(cls, "forward", _outside_mode_when_inferring(cls.forward))


def _outside_mode_when_inferring(forward: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(forward)
    def wrapper(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if self.training or torch.is_grad_enabled():
            return forward(self, *args, **kwargs)
        with torch._C.DisableTorchFunction():
            return forward(self, *args, **kwargs)

    return wrapper
