"""Cut tracking: which places in the user's code took a value out of the autograd graph.

A :class:`CutTracker` (a ``TorchFunctionMode``) sees every torch call of the main thread. The rule:
*an op whose inputs include a tensor that requires grad but whose tensor
output does not* is a **cut**. Under grad mode that is ``detach``, ``.data``, ``argmax``, a
comparison, an integer cast, ``torch.tensor(t)``; under ``no_grad`` / ``inference_mode`` every op on
a requires-grad input is one, blamed on the ``with`` line. Each output downstream of a cut is tagged
with the cut's id, so at ``backward()`` the loss says which cuts fed it, and each cut remembers its
*roots* (the graph nodes or leaves it cut off) so the diagnosis can tell which parameters it starved.

Per-tensor data lives in side tables keyed by ``id()`` with a weakref callback, never in tensor
attributes: attributes are pickled by ``torch.save`` and would make the user's checkpoints unloadable
with ``weights_only=True``. Cuts are deduplicated by site and dropped after each checked backward, so
memory does not grow with the step count.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from gradcheck_cli.functorch_guard import in_transform
from gradcheck_cli.graph import STAMP_KEY
from gradcheck_cli.sites import (
    CallSite,
    caller_is_user,
    capture,
    first_foreign_frame,
    is_user_file,
    nearest_user_frame,
    quick_site,
)

TB = torch._C.TensorBase
Tensor = torch.Tensor

_MAX_ROOTS = 256
_INIT_SUFFIX = os.path.join("torch", "nn", "init.py")
_MAX_ESCAPES = 4096


def grad_fn_of(t: Tensor) -> Any:
    """``t.grad_fn``, or None where reading it raises: a view made under no_grad whose base was
    then written in place (``nn.Embedding(padding_idx=...)`` zeroes its row that way)."""
    try:
        return t.grad_fn
    except RuntimeError:
        return None


class IdTable:
    """Side data for tensors keyed by ``id()``; an entry vanishes when its tensor is freed."""

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[int, tuple[weakref.ref[Any], Any]] = {}

    def get(self, t: object) -> Any:
        e = self._d.get(id(t))
        if e is not None and e[0]() is t:
            return e[1]
        return None

    def set(self, t: object, value: Any) -> None:
        d = self._d
        k = id(t)
        e = d.get(k)
        if e is not None and e[0]() is t:
            d[k] = (e[0], value)
            return

        def gone(ref: weakref.ref[Any], k: int = k, d: dict[int, Any] = d) -> None:
            cur = d.get(k)
            if cur is not None and cur[0] is ref:
                del d[k]

        d[k] = (weakref.ref(t, gone), value)

    def discard(self, t: object) -> None:
        e = self._d.get(id(t))
        if e is not None and e[0]() is t:
            del self._d[id(t)]

    def clear(self) -> None:
        self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


@dataclass(eq=False)
class Cut:
    """One place where values left the graph. ``roots``: what was cut off (leaves or grad_fn nodes)."""

    id: int
    kind: str
    where: CallSite
    op: str
    roots: dict[int, Any] = field(default_factory=dict)
    origin: Cut | None = None  # for a round trip: the .item()/.numpy() escape it re-entered from

    def add_roots(self, tensors: list[Tensor]) -> None:
        roots = self.roots
        for t in tensors:
            if len(roots) >= _MAX_ROOTS:
                return
            node = grad_fn_of(t)
            if node is None:
                # A view made under no_grad (``cls_token.expand(...)``) requires grad but has no
                # grad_fn: what was cut off is the tensor it views.
                while t._is_view() and t._base is not None:
                    t = t._base
            obj = node if node is not None else t
            roots.setdefault(id(obj), obj)


@dataclass
class Region:
    """An active grad-mode change (``with torch.no_grad():``, a decorator, a plain call)."""

    kind: str  # no_grad | enable_grad | set_grad_enabled | inference_mode
    enabled: bool  # grad mode inside the region
    where: CallSite | None
    token: Any  # the context-manager object (or a weakref to it for plain calls)
    plain: bool = False


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or repr(func)
    owner = getattr(func, "__objclass__", None) or getattr(func, "__self__", None)
    if name in ("__get__", "__set__"):
        return "." + str(getattr(owner, "__name__", "attribute"))
    if isinstance(owner, type) and owner.__name__ == "TensorBase":
        return f"Tensor.{name}"
    return f"torch.{name}"


class Tracker:
    """All runtime state of the instrumentation (one per :class:`~gradcheck_cli.session.Session`)."""

    def __init__(self) -> None:
        self.tags = IdTable()  # tensor -> frozenset of cut ids upstream of it
        self.born = IdTable()  # tensor -> CallSite of the user factory call that created it
        self.rg_off = IdTable()  # tensor -> CallSite where requires_grad was turned off
        self.user_leaves = IdTable()  # born tensors that require grad (-> True)
        self.made_from = IdTable()  # non-leaf tensor -> CallSite of the op that made it
        self.data_views = IdTable()  # tensor returned by `.data` -> the tensor sharing its storage
        self.data_written = IdTable()  # tensor -> CallSite of the last `.data` write by user code
        self.param_writes = IdTable()  # parameter -> CallSite of the last in-place write (an init)
        # grad_fn of a non-leaf tensor overwritten through `.data` -> (node, CallSite of the write)
        self.written_nodes: dict[int, tuple[Any, CallSite]] = {}
        self.made_at = IdTable()  # constant tensor -> Site that made it (on a probed call only)
        self.frozen_held = (
            IdTable()
        )  # tensors frozen while an optimizer already held them (-> True)
        # Does an optimizer hold this tensor, not yet stepped (see Session._held_untrained)?
        self.held_untrained: Callable[[Tensor], bool] | None = None
        self.errors: list[str] = []  # our own failures, reported as notes (never raised)
        self.on_grad_cleared: Callable[[], None] | None = None  # `p.grad = None` by user code
        self.cuts: dict[int, Cut] = {}
        self._cut_by_key: dict[tuple[Any, ...], Cut] = {}
        self._next_id = 1
        self.float_escapes: dict[int, tuple[object, int]] = {}
        self.array_escapes: dict[int, int] = {}
        self._local = threading.local()
        self.suspended = False  # True while we run our own code or autograd runs backward
        self.grad_reads: list[
            tuple[Tensor, CallSite, str | None]
        ] = []  # (tensor, where, its variable)
        self.stamp = False  # stamp user sites into grad_fn.metadata (for the next checked backward)
        self.modules: list[Any] = []  # modules whose forward is running (innermost last)
        self.backward_calls = 0

    # -- regions ---------------------------------------------------------------------------------

    @property
    def regions(self) -> list[Region]:
        stack = getattr(self._local, "regions", None)
        if stack is None:
            stack = self._local.regions = []
        return stack

    def push_region(self, region: Region) -> None:
        stack = self.regions
        if region.kind == "set_grad_enabled":
            # A plain `torch.set_grad_enabled(x)` call stays in force until overridden: drop the
            # earlier plain calls it overrides so the stack stays bounded.
            while stack and stack[-1].plain and stack[-1].kind == "set_grad_enabled":
                stack.pop()
        stack.append(region)

    def pop_region(self, token: Any) -> None:
        stack = self.regions
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].token is token:
                del stack[i:]
                return

    def active_off_region(self) -> Region | None:
        """The innermost grad-mode region, when it switched grad off."""
        if self.regions and not self.regions[-1].enabled:
            return self.regions[-1]
        return None

    # -- cuts ------------------------------------------------------------------------------------

    def cut_at(self, kind: str, where: CallSite, op: str, origin: Cut | None = None) -> Cut:
        key = (kind, where.site, op, origin.id if origin else 0)
        cut = self._cut_by_key.get(key)
        if cut is None:
            cut = Cut(self._next_id, kind, where, op, origin=origin)
            self._next_id += 1
            self.cuts[cut.id] = cut
            self._cut_by_key[key] = cut
        return cut

    def region_cut(self, region: Region | None, op: str) -> Cut | None:
        if region is None:
            where = capture()
            if where is None:
                return None
            return self.cut_at("set_grad_enabled", where, op)
        if region.where is None:
            return None
        kind = "inference_mode" if region.kind == "inference_mode" else region.kind
        if kind not in ("no_grad", "inference_mode", "set_grad_enabled"):
            kind = "no_grad"
        return self.cut_at(kind, region.where, "region")

    def note_freeze(self, t: Tensor, where: CallSite) -> None:
        """``requires_grad`` of ``t`` turned off at ``where`` (remembering whether an optimizer
        already held it, untrained: a freeze after the optimizer was built to train it)."""
        self.rg_off.set(t, where)
        if self.held_untrained is not None and self.held_untrained(t):
            self.frozen_held.set(t, True)

    def internal_error(self, e: Exception) -> None:
        if len(self.errors) < 5:
            self.errors.append(f"{type(e).__name__}: {e}")

    def tags_of(self, cut_ids: frozenset[int] | None) -> list[Cut]:
        if not cut_ids:
            return []
        return [self.cuts[i] for i in sorted(cut_ids) if i in self.cuts]

    def new_generation(self) -> None:
        """Forget cuts and escapes after a checked backward (bounded memory)."""
        self.cuts.clear()
        self._cut_by_key.clear()
        self.float_escapes.clear()
        self.array_escapes.clear()
        self.written_nodes.clear()

    def remember_float(self, value: object, cut: Cut) -> None:
        esc = self.float_escapes
        if len(esc) >= _MAX_ESCAPES:
            del esc[next(iter(esc))]
        esc[id(value)] = (value, cut.id)

    def remember_array(self, array: Any, cut: Cut) -> None:
        try:
            ptr = array.__array_interface__["data"][0]
        except Exception:
            return
        esc = self.array_escapes
        if len(esc) >= _MAX_ESCAPES:
            del esc[next(iter(esc))]
        esc[ptr] = cut.id

    def escape_of(self, data: object) -> Cut | None:
        """The escape cut that ``data`` (a float, list of floats or ndarray) came out of, if any."""
        if type(data) is float:
            e = self.float_escapes.get(id(data))
            if e is not None and e[0] is data:
                return self.cuts.get(e[1])
            return None
        if type(data) in (list, tuple):
            for item in data[:64]:
                c = self.escape_of(item)
                if c is not None:
                    return c
            return None
        if self.array_escapes and hasattr(data, "__array_interface__"):
            try:
                ptr = data.__array_interface__["data"][0]  # type: ignore[attr-defined]
            except Exception:
                return None
            cid = self.array_escapes.get(ptr)
            return self.cuts.get(cid) if cid is not None else None
        return None

    # -- tagging ---------------------------------------------------------------------------------

    def tag_outputs(self, out: Any, tags: frozenset[int]) -> None:
        if isinstance(out, Tensor):
            self._add_tags(out, tags)
        elif type(out) in (tuple, list):
            for o in out:
                if isinstance(o, Tensor):
                    self._add_tags(o, tags)

    def _add_tags(self, t: Tensor, tags: frozenset[int]) -> None:
        old = self.tags.get(t)
        self.tags.set(t, tags if old is None else old | tags)


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Tensor]:
    found: list[Tensor] = []
    for a in args:
        if isinstance(a, Tensor):
            found.append(a)
        elif type(a) in (list, tuple):
            found.extend(b for b in a if isinstance(b, Tensor))
    for a in kwargs.values():
        if isinstance(a, Tensor):
            found.append(a)
    return found


# Metadata getters and autograd plumbing: never cuts, never carry values.
_PASSTHROUGH: set[Any] = {
    TB.requires_grad.__get__,
    TB.grad_fn.__get__,
    TB._base.__get__,
    TB.is_leaf.__get__,
    TB.shape.__get__,
    TB.dtype.__get__,
    TB.device.__get__,
    TB.ndim.__get__,
    TB.size,
    TB.dim,
    TB.numel,
    TB.__len__,
    TB.retain_grad,
    TB.data_ptr,
    TB.is_contiguous,
    TB.is_floating_point,
    TB.element_size,
    TB.stride,
    Tensor.backward,
    Tensor.register_hook,
    Tensor.__repr__,
    Tensor.__format__,
    Tensor.__hash__,
    Tensor.__reduce_ex__,
    Tensor.__deepcopy__,
    Tensor.__setstate__,
}

# Outputs that legitimately do not require grad although an input does: not cuts.
_NOT_CUTS: set[Any] = {
    torch.zeros_like,
    torch.ones_like,
    torch.empty_like,
    torch.full_like,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
    TB.new_zeros,
    TB.new_ones,
    TB.new_empty,
    TB.new_full,
    TB.new_tensor,
    TB.requires_grad_,
    TB.requires_grad.__set__,
    TB.data.__set__,
    TB.grad.__get__,
    TB.grad.__set__,
    torch.is_nonzero,
    TB.__bool__,
    TB.__index__,
}

_FACTORIES: set[Any] = {
    torch.randn,
    torch.rand,
    torch.randint,
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.eye,
    torch.normal,
    torch.randperm,
    torch.tensor,
    torch.as_tensor,
    torch.asarray,
}

_REWRAP = {torch.tensor, torch.as_tensor, torch.asarray, TB.new_tensor}


class CutTracker(TorchFunctionMode):
    """The TorchFunctionMode: tags outputs downstream of cuts and records the cuts' sites.

    The op itself always runs exactly once, outside any ``try``; our bookkeeping after it is
    guarded, so a bug of ours becomes a note in the report, never an exception in the script.
    """

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if kwargs is None:
            kwargs = {}
        if torch.compiler.is_compiling():  # being traced into a compiled graph: stay out of it
            return func(*args, **kwargs)
        tr = self.tracker
        special = _ROUTE.get(func)
        if special is None and not tr.suspended:
            out = func(*args, **kwargs)
            # The fast path, most ops of a correct forward: a differentiable op whose output
            # requires grad is not a cut, and while no tensor is tagged, no site is being stamped
            # and no user-created leaf is alive, there is nothing else to record.
            if (
                isinstance(out, Tensor)
                and out.requires_grad
                and not tr.tags._d
                and not tr.stamp
                and not tr.user_leaves._d
                and args
                and out is not args[0]
                and func not in _FACTORIES
            ):
                return out
            if in_transform():
                return out  # a functorch wrapper: nothing of ours runs on it
            try:
                self._after(tr, func, args, kwargs, out)
            except Exception as e:
                tr.internal_error(e)
            return out
        if special is None or special is _PASS or tr.suspended or in_transform():
            return func(*args, **kwargs)
        src = args[0] if args else None
        # detach_() and requires_grad_() change the source in place: read it before the call.
        src_rg = isinstance(src, Tensor) and src.requires_grad
        out = func(*args, **kwargs)
        try:
            special(tr, func, args, kwargs, out, src_rg)
        except Exception as e:
            tr.internal_error(e)
        return out

    def _after(
        self, tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
    ) -> None:
        rg = False
        tags: frozenset[int] | None = None
        if not tr.tags._d:
            # Fast path (most ops of a correct script): nothing is tagged, only look for grad.
            for a in args:
                if isinstance(a, Tensor):
                    if a.requires_grad:
                        rg = True
                        break
                elif type(a) in (list, tuple) and any(
                    isinstance(b, Tensor) and b.requires_grad for b in a
                ):
                    rg = True
                    break
            else:
                rg = any(isinstance(a, Tensor) and a.requires_grad for a in kwargs.values())
            self._finish(tr, func, args, kwargs, out, rg, None)
            return
        tags_get = tr.tags.get
        # Tensors among the arguments, one level into lists (torch.cat), keywords as they are.
        flat = [b for a in args for b in (a if type(a) in (list, tuple) else (a,))]
        if kwargs:
            flat += kwargs.values()
        for b in flat:
            if isinstance(b, Tensor):
                if b.requires_grad:
                    rg = True
                t = tags_get(b)
                if t:
                    tags = t if tags is None else tags | t
        self._finish(tr, func, args, kwargs, out, rg, tags)

    def _finish(
        self,
        tr: Tracker,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: Any,
        rg: bool,
        tags: frozenset[int] | None,
    ) -> None:
        if rg:
            cut = _cut_for(tr, func, args, kwargs, out)
            if cut is not None:
                tags = frozenset((cut.id,)) if tags is None else tags | {cut.id}
            elif tr.stamp:
                _stamp(tr, out)
                if func in _MASKING:
                    _note_mask(tr, args, out)
            # An in-place write into a parameter (allowed under no_grad only): an init or a reset.
            # nn.init functions arrive here whole, with the tensor as a keyword argument.
            a0 = args[0] if args else next(iter(kwargs.values()), None)
            if out is a0 and grad_fn_of(a0) is None:
                _note_param_write(tr, a0)
            if tr.user_leaves._d:
                _note_non_leaf(tr, args, out)
        elif func in _FACTORIES:
            _note_birth(tr, out)
        elif len(tr.data_views) and args and isinstance(args[0], Tensor):
            owner = tr.data_views.get(args[0])
            if owner is not None and getattr(func, "__name__", "").endswith("_"):
                _note_data_write(tr, owner)
        if not rg and tr.stamp and isinstance(out, Tensor) and func not in _FACTORIES:
            # On a probed call: where each constant (a mask, a weight) was made.
            site = quick_site()
            if site is not None:
                tr.made_at.set(out, site)
        if tags:
            tr.tag_outputs(out, tags)


def _cut_for(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> Cut | None:
    """The cut ``func`` made, if its tensor output(s) no longer require grad."""
    if isinstance(out, Tensor):
        if out.requires_grad:
            return None
    elif type(out) in (tuple, list):
        if not any(isinstance(o, Tensor) and not o.requires_grad for o in out):
            return None
    else:
        return None
    if func in _NOT_CUTS:
        return None
    if not torch.is_grad_enabled():
        cut = tr.region_cut(tr.active_off_region(), _op_name(func))
    else:
        where = capture()
        if where is None:
            return None
        kind = "rewrap_tensor" if func in _REWRAP else "nondifferentiable_op"
        cut = tr.cut_at(kind, where, _op_name(func))
    if cut is not None:
        cut.add_roots([t for t in _inputs(args, kwargs) if t.requires_grad])
    return cut


def _note_birth(tr: Tracker, out: Any) -> None:
    """A tensor made by a factory call in user code: remember where (for "where was it created")."""
    if isinstance(out, Tensor) and caller_is_user():
        where = capture()
        if where is not None:
            tr.born.set(out, where)
            if out.requires_grad:
                tr.user_leaves.set(out, True)


def _note_non_leaf(tr: Tracker, args: tuple[Any, ...], out: Any) -> None:
    """A user-created leaf turned into a non-leaf (``.to``, ``* 0.01``): remember where."""
    if not isinstance(out, Tensor) or grad_fn_of(out) is None:
        return
    for a in args:
        if (
            isinstance(a, Tensor)
            and a.requires_grad
            and grad_fn_of(a) is None
            and tr.user_leaves.get(a) is not None
        ):
            where = capture()
            if where is not None:
                tr.made_from.set(out, where)
            return


def _stamp(tr: Tracker, out: Any) -> None:
    """Remember in the output's autograd node which user line (and module) made it.

    Nodes take no attributes and cannot be weak-referenced, but ``metadata`` is a dict that lives
    as long as the node: the zero-gradient attribution reads it back during the checked backward.
    """
    node = grad_fn_of(out) if isinstance(out, Tensor) else None
    if node is None and type(out) in (tuple, list):
        node = next(
            (n for o in out if isinstance(o, Tensor) and (n := grad_fn_of(o)) is not None), None
        )
    if node is None:
        return
    meta = node.metadata
    if STAMP_KEY not in meta:
        meta[STAMP_KEY] = (quick_site(), tr.modules[-1] if tr.modules else None)


_MASKING = {
    torch.mul,
    TB.mul,
    TB.__mul__,
    TB.__rmul__,
    torch.where,
    TB.masked_fill,
    torch.masked_fill,
}
MASK_KEY = "gradcheck_mask"  # node metadata: (site where the constant operand was made, it)


def _note_mask(tr: Tracker, args: tuple[Any, ...], out: Any) -> None:
    """A product with a constant (a mask): remember the constant and where it was made."""
    node = grad_fn_of(out) if isinstance(out, Tensor) else None
    if node is None:
        return
    for a in args:
        if isinstance(a, Tensor) and not a.requires_grad:
            site = tr.made_at.get(a) or (w.site if (w := tr.born.get(a)) is not None else None)
            if site is not None:
                node.metadata[MASK_KEY] = (site, a)
                return


# -- special handlers: called after the op with its output and whether its source required grad --

Handler = Callable[[Tracker, Any, tuple[Any, ...], dict[str, Any], Any, bool], None]


def _explicit_cut(kind: str) -> Handler:
    """``.detach()`` / ``detach_()`` / ``torch.detach`` / ``.data``: an explicit cut."""

    def handler(
        tr: Tracker,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: Any,
        src_rg: bool,
    ) -> None:
        src = args[0] if args else None
        tags = tr.tags.get(src) if isinstance(src, Tensor) else None
        if src_rg:
            where = capture()
            if where is not None:
                cut = tr.cut_at(kind, where, _op_name(func))
                cut.add_roots([src])  # type: ignore[list-item]
                tags = frozenset((cut.id,)) if tags is None else tags | {cut.id}
        if tags:
            tr.tag_outputs(out, tags)

    return handler


_data_cut = _explicit_cut("data_attr")


def _data_get(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, src_rg: bool
) -> None:
    _data_cut(tr, func, args, kwargs, out, src_rg)
    src = args[0] if args else None
    if src_rg and isinstance(src, Tensor) and isinstance(out, Tensor):
        # An in-place op on the view writes the parameter, or an op's saved output behind
        # autograd's back (``torch.sigmoid(h).data.fill_(1)``).
        tr.data_views.set(out, src)


def _data_set(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, src_rg: bool
) -> None:
    if args and isinstance(args[0], Tensor):
        _note_data_write(tr, args[0])


def _note_param_write(tr: Tracker, param: Tensor) -> None:
    """Where the user set a parameter's values in place (an init, a reset) — not optimizer steps."""
    frame = first_foreign_frame()
    if frame is None:
        return
    filename = frame.f_code.co_filename
    if is_user_file(filename) or filename.endswith(_INIT_SUFFIX):
        where = capture()
        if where is not None:
            tr.param_writes.set(param, where)


def _note_data_write(tr: Tracker, owner: Tensor) -> None:
    where = capture()
    if where is not None and not where.library:  # Module.to() & co. write .data too
        tr.data_written.set(owner, where)
        node = grad_fn_of(owner)
        if node is not None and len(tr.written_nodes) < _MAX_ESCAPES:
            tr.written_nodes[id(node)] = (node, where)


def _requires_grad_set(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, src_rg: bool
) -> None:
    t = args[0] if args else None
    value = args[1] if len(args) > 1 else kwargs.get("requires_grad", True)
    if not isinstance(t, Tensor):
        return
    if value:
        tr.rg_off.discard(t)
        if tr.born.get(t) is not None:
            tr.user_leaves.set(t, True)
    elif tr.rg_off.get(t) is None:
        where = capture()
        if where is not None:
            tr.note_freeze(t, where)


_LEGACY_CONSTRUCTOR = re.compile(r"\b(Float|Double|Half|Long|Int|)Tensor\(\s*\[")


def _escape(kind: str) -> Handler:
    """``.item()`` / ``.tolist()`` / ``float()`` / ``.numpy()``: values leave torch as Python/NumPy."""

    def handler(
        tr: Tracker,
        func: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        out: Any,
        src_rg: bool,
    ) -> None:
        src = args[0] if args else None
        if not isinstance(src, Tensor):
            return
        upstream = tr.tags_of(tr.tags.get(src))
        if not src_rg and not upstream:
            return
        where = capture()
        if where is None:
            return
        this_kind, op = kind, _op_name(func)
        if func is not TB.item and (legacy := _LEGACY_CONSTRUCTOR.search(where.site.code)):
            # ``torch.Tensor([t1, t2])`` calls ``__float__`` on each element from C: a re-wrap.
            this_kind, op = "rewrap_tensor", "torch." + legacy.group(0)[:-2].strip()
        cut = tr.cut_at(this_kind, where, op)
        if src_rg:
            cut.add_roots([src])
        for up in upstream:  # e.g. .detach().numpy(): the detach's roots travel with the array
            for k, v in up.roots.items():
                cut.roots.setdefault(k, v)
        if kind == "numpy_roundtrip":
            tr.remember_array(out, cut)
        elif type(out) is float:
            tr.remember_float(out, cut)
        elif type(out) is list:
            tr.remember_float(out, cut)
            for v in out[:64]:
                if type(v) is float:
                    tr.remember_float(v, cut)

    return handler


def _factory(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, src_rg: bool
) -> None:
    """``torch.tensor(data)`` and friends: a re-wrapped tensor, or a value re-entering the graph."""
    data = (
        args[1]
        if func is TB.new_tensor and len(args) > 1
        else (args[0] if args else kwargs.get("data"))
    )
    held = [data] if isinstance(data, Tensor) else _tensors_in(data)
    if held:
        # ``torch.tensor(t)``, ``torch.as_tensor((q_a, q_b))``, ``torch.tensor([f(x) for x in xs])``
        tags: frozenset[int] | None = None
        for t in held:
            up = tr.tags.get(t)
            if up:
                tags = up if tags is None else tags | up
        grad_inputs = [t for t in held if t.requires_grad]
        if grad_inputs:
            where = capture()
            if where is not None:
                cut = tr.cut_at("rewrap_tensor", where, _op_name(func))
                cut.add_roots(grad_inputs)
                tags = frozenset((cut.id,)) if tags is None else tags | {cut.id}
        if tags:
            tr.tag_outputs(out, tags)
        return
    escape = tr.escape_of(data) if (tr.float_escapes or tr.array_escapes) else None
    if escape is not None:
        where = capture()
        if where is not None:
            cut = tr.cut_at(escape.kind, where, _op_name(func), origin=escape)
            cut.roots = escape.roots
            tr.tag_outputs(out, frozenset((cut.id,)))
    if func is not TB.new_tensor:
        _note_birth(tr, out)


def _tensors_in(data: Any, depth: int = 0) -> list[Tensor]:
    """The tensors inside a (nested) list or tuple handed to a tensor factory."""
    if type(data) not in (list, tuple) or depth > 3:
        return []
    found: list[Tensor] = []
    for item in data[:4096]:
        if isinstance(item, Tensor):
            found.append(item)
        elif type(item) in (list, tuple):
            found += _tensors_in(item, depth + 1)
    return found


def _grad_set(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, src_rg: bool
) -> None:
    if len(args) > 1 and args[1] is None and tr.on_grad_cleared is not None and caller_is_user():
        tr.on_grad_cleared()


def _grad_get(
    tr: Tracker, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, src_rg: bool
) -> None:
    if out is None and tr.backward_calls and caller_is_user():
        where = capture()
        if where is not None and len(tr.grad_reads) < 1024:
            tr.grad_reads.append((args[0], where, _variable_name(args[0])))


def _variable_name(t: Any) -> str | None:
    """The reading frame's variable that holds ``t`` (a None ``.grad`` read is rare: scan is fine)."""
    frame = nearest_user_frame()
    if frame is None:
        return None
    for scope in (frame.f_locals, frame.f_globals):
        for name, value in scope.items():
            if value is t and not name.startswith("_"):
                return name
    return None


def from_numpy_hook(tracker: Tracker, array: Any, out: Tensor) -> None:
    """Called by the ``torch.from_numpy`` patch (the mode cannot see that function)."""
    if not tracker.array_escapes:
        return
    escape = tracker.escape_of(array)
    if escape is None:
        return
    where = capture()
    if where is None:
        return
    cut = tracker.cut_at(escape.kind, where, "torch.from_numpy", origin=escape)
    cut.roots = escape.roots
    tracker.tag_outputs(out, frozenset((cut.id,)))


_SPECIAL: dict[Any, Handler] = {
    TB.detach: _explicit_cut("detach"),
    torch.detach: _explicit_cut("detach"),
    TB.detach_: _explicit_cut("detach"),
    TB.data.__get__: _data_get,
    TB.data.__set__: _data_set,
    TB.requires_grad.__set__: _requires_grad_set,
    TB.requires_grad_: _requires_grad_set,
    TB.item: _escape("python_scalar_roundtrip"),
    TB.tolist: _escape("python_scalar_roundtrip"),
    TB.__float__: _escape("python_scalar_roundtrip"),
    TB.numpy: _escape("numpy_roundtrip"),
    torch.tensor: _factory,
    torch.as_tensor: _factory,
    torch.asarray: _factory,
    TB.new_tensor: _factory,
    TB.grad.__get__: _grad_get,
    TB.grad.__set__: _grad_set,
}

# One lookup per op: the special handler, or _PASS for the metadata getters, or None.
_PASS: Handler = lambda *a: None  # noqa: E731
_ROUTE: dict[Any, Handler] = {**dict.fromkeys(_PASSTHROUGH, _PASS), **_SPECIAL}
