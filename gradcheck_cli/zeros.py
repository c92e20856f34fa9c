"""Zero gradients: the op where a gradient died, and the user line behind it.

During a checked backward a hook on every node of the loss's graph records, per node, whether the
gradient it *received* was non-zero and, per outgoing edge, whether the gradient it *sent* was. For
a parameter whose gradient ends up all zero, the culprit is the node nearest the loss, on a path to
that parameter, that received a non-zero gradient but sent all-zero ones along every edge toward it
(a dead ReLU, a saturated clamp, a multiplication by a zero mask, a ``round``). The forward line of
that op was stamped into ``grad_fn.metadata`` by the TorchFunctionMode. The reductions are queued as
tensors and read once after the backward (one sync, not one per node, on a GPU).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from gradcheck_cli.graph import ACCUMULATE_GRAD, Walk, stamp_of
from gradcheck_cli.rules import KINDS
from gradcheck_cli.sites import CallSite, Site
from gradcheck_cli.tracking import MASK_KEY

_ZERO_DERIVATIVE = {
    "RoundBackward0": "round",
    "RoundBackward1": "round",
    "FloorBackward0": "floor",
    "CeilBackward0": "ceil",
    "SignBackward0": "sign",
    "TruncBackward0": "trunc",
    "FracBackward0": "frac",
}
_ZEROED_HINT = (
    "Do not set this weight to zero: a zero weight passes no gradient to the layers before it. "
    "If a zero-initialised layer is deliberate, the earlier layers learn only after its first update; "
    "list them under allow_zero."
)
_RELU = {"ReluBackward0", "ThresholdBackward0", "Relu6Backward0"}
_CLAMP = {
    "ClampBackward0",
    "ClampBackward1",
    "ClampMinBackward0",
    "ClampMaxBackward0",
    "HardtanhBackward0",
}


def _flag(g: Any) -> tuple[Any, int] | None:
    if g is None:
        return None
    return (g.detach().any(), g.numel())


@dataclass
class Probe:
    """Per-node gradient flags recorded during one backward."""

    received: dict[int, list[tuple[Any, int] | None]] = field(default_factory=dict)
    sent: dict[int, list[tuple[Any, int] | None]] = field(default_factory=dict)
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # of each node's first output
    handles: list[Any] = field(default_factory=list)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def resolve(self) -> None:
        """Turn the queued flag tensors into Python bools (one pass after the backward)."""
        for table in (self.received, self.sent):
            for key, flags in table.items():
                table[key] = [None if f is None else (bool(f[0]), f[1]) for f in flags]


def attach(walk: Walk) -> Probe:
    probe = Probe()

    def make(key: int) -> Any:
        def hook(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> None:
            probe.received[key] = [_flag(g) for g in grad_outputs]
            probe.sent[key] = [_flag(g) for g in grad_inputs]
            if grad_outputs and grad_outputs[0] is not None:
                probe.shapes[key] = tuple(grad_outputs[0].shape)

        return hook

    for key, node in walk.nodes.items():
        if type(node) is ACCUMULATE_GRAD:
            continue  # AccumulateGrad: the parameter's own .grad tells us
        try:
            probe.handles.append(node.register_hook(make(key)))
        except RuntimeError:
            continue
    return probe


@dataclass
class Culprit:
    kind: str  # zero_grad_flow | nondifferentiable_op | data_attr
    site: Site | CallSite | None
    module: Any
    message: str
    zeroed: torch.Tensor | None = None  # a tensor a `.data` write set to zero
    related: CallSite | None = None  # the upstream line that made it so (e.g. the bias init)
    hint: str | None = None
    node_name: str = ""  # the autograd node where the gradient died (the report's cut path)
    severity: str | None = None  # info: a zero that is expected at the start (see _zero_weight)


def _parents(walk: Walk) -> dict[int, list[Any]]:
    parents: dict[int, list[Any]] = {}
    get = parents.get
    for node in walk.nodes.values():
        for child, _ in getattr(node, "next_functions", ()):
            if child is not None:
                found = get(id(child))
                if found is None:
                    parents[id(child)] = [node]
                else:
                    found.append(node)
    return parents


class Attributor:
    """Finds culprits for zero parameters of one backward (graph indexes built once)."""

    def __init__(
        self,
        walk: Walk,
        probe: Probe,
        starts: list[Any],
        tracker: Any = None,
        stepped: set[int] | None = None,
    ) -> None:
        self.walk = walk
        self.data_written = tracker.data_written if tracker is not None else None
        self.param_writes = tracker.param_writes if tracker is not None else None
        self.stepped = stepped if stepped is not None else set()  # tensors an optimizer updated
        # Non-leaf tensors the user overwrote through `.data`, by the node that made them.
        self.written_nodes: dict[int, tuple[Any, CallSite]] = (
            tracker.written_nodes if tracker is not None else {}
        )
        self.related: CallSite | None = None
        self.probe = probe
        self.starts = [s for s in starts if s is not None]
        self.parents = _parents(walk)
        self.acc_of: dict[int, Any] = walk.acc

    def _toward(self, target: Any) -> set[int]:
        seen = {id(target)}
        queue = deque([target])
        while queue:
            node = queue.popleft()
            for parent in self.parents.get(id(node), ()):
                if id(parent) not in seen:
                    seen.add(id(parent))
                    queue.append(parent)
        return seen

    def culprit(self, param: torch.Tensor) -> Culprit | None:
        target = self.acc_of.get(id(param))
        if target is None:
            return None
        toward = self._toward(target)
        seen: set[int] = set()
        queue = deque(s for s in self.starts if id(s) in toward)
        while queue:
            node = queue.popleft()
            if id(node) in seen:
                continue
            seen.add(id(node))
            received = self.probe.received.get(id(node))
            sent = self.probe.sent.get(id(node))
            if received is None or sent is None:
                continue
            got = any(f is not None and f[0] for f in received)
            edges = [
                (i, child)
                for i, (child, _) in enumerate(node.next_functions)
                if child is not None and id(child) in toward
            ]
            if (
                got
                and edges
                and all(
                    not (i < len(sent) and sent[i] is not None and sent[i][0]) for i, _ in edges
                )
            ):
                written = self._written_output(node)
                if written is not None:
                    return written
                zero_weight = self._zero_weight(node)
                if zero_weight is not None:
                    return zero_weight
                dead_input = self._dead_relu_input(node)
                if dead_input is not None:
                    # A layer whose input is a dead ReLU's output gets a zero weight gradient: the
                    # ReLU is the cause, and both belong to one finding.
                    return self._describe(dead_input)
                zeroed = self._zeroed_operand(node)
                if zeroed is not None:
                    return zeroed
                empty = any(
                    i < len(sent) and sent[i] is not None and sent[i][1] == 0 for i, _ in edges
                )
                return self._describe(node, empty)
            for _, child in edges:
                if id(child) not in seen:
                    queue.append(child)
        return None

    def _written_output(self, node: Any) -> Culprit | None:
        """``node`` (or an op feeding it) computes from a tensor the user overwrote through
        ``.data``: sigmoid, tanh, exp and softmax save their output for the backward."""
        if not self.written_nodes:
            return None
        for n in _near(node):
            hit = self.written_nodes.get(id(n))
            if hit is not None:
                maker, where = hit
                op = type(maker).__name__
                message = (
                    f"`.data` overwrote the output of `{op.removesuffix('Backward0')}` behind "
                    f"autograd's back; the backward ({op}) computes from the overwritten values, "
                    "so it passed an all-zero gradient toward these parameters"
                )
                return Culprit("data_attr", where, None, message, node_name=op)
        return None

    def _zero_weight(self, node: Any) -> Culprit | None:
        """A parameter that is exactly zero, multiplied in by ``node``, that got a gradient
        itself: the gradient upstream is zero until it moves (LoRA's ``lora_B``, a zero-initialised
        last BatchNorm weight, adaLN-Zero). Expected before its first update (info); after one,
        the zero is re-made somewhere and is a finding."""
        for child in _near(node):
            v = getattr(child, "variable", None)
            if (
                isinstance(v, torch.Tensor)
                and id(v) not in self.stepped
                and v.numel()
                and not bool(v.detach().any())
                and v.grad is not None
                and bool(v.grad.detach().any())
            ):
                where = None
                for table in (self.param_writes, self.data_written):
                    where = where or (table.get(v) if table is not None else None)
                message = (
                    "upstream gradients are zero until {operand} moves: it is exactly zero "
                    "(zero-initialised) and gets a gradient itself, so these tensors learn from its "
                    "first update on (by design in LoRA, zero-initialised residual branches)"
                )
                return Culprit(
                    "zero_grad_flow",
                    where,
                    None,
                    message,
                    zeroed=v,
                    node_name=type(node).__name__,
                    severity="info",
                )
        return None

    def _zeroed_operand(self, node: Any) -> Culprit | None:
        """An operand of ``node`` that is all zero because the user wrote it through ``.data``."""
        if self.data_written is None:
            return None
        frontier = [node]
        for _ in range(2):
            nxt = []
            for n in frontier:
                for child, _ in getattr(n, "next_functions", ()):
                    if child is None:
                        continue
                    v = getattr(child, "variable", None)
                    if isinstance(v, torch.Tensor):
                        where = self.data_written.get(v)
                        if where is not None and not bool(v.detach().any()):
                            msg = (
                                "{operand} was set to all zeros through `.data`, so no gradient passes through the op that uses it ("
                                + type(node).__name__
                                + ")"
                            )
                            return Culprit(
                                "data_attr",
                                where,
                                None,
                                msg,
                                zeroed=v,
                                node_name=type(node).__name__,
                            )
                    else:
                        nxt.append(child)
            frontier = nxt
        return None

    def _dead(self, node: Any) -> bool:
        received = self.probe.received.get(id(node))
        sent = self.probe.sent.get(id(node))
        return (
            bool(received and sent)
            and any(f is not None and f[0] for f in received)
            and not any(  # type: ignore[arg-type]
                f is not None and f[0]
                for f in sent  # type: ignore[union-attr]
            )
        )

    def _dead_relu_input(self, node: Any) -> Any:
        if not type(node).__name__.startswith(
            ("AddmmBackward", "MmBackward", "BmmBackward", "MvBackward")
        ):
            return None
        for child, _ in node.next_functions:
            if child is not None and type(child).__name__ in _RELU and self._dead(child):
                return child
        return None

    def _describe(self, node: Any, empty: bool = False) -> Culprit:
        culprit = describe(node, empty, self.probe.shapes.get(id(node)))
        mask = _zero_mask(node)
        if mask is not None and culprit.kind == "zero_grad_flow":
            culprit.message = KINDS["zero_grad_flow"].message(
                "zero_mask", code=mask.code.split("  #")[0].strip(), node=type(node).__name__
            )
            culprit.related = mask
        if type(node).__name__ in _RELU:
            self.related = None
            culprit.message += self._negative_bias(node)
            culprit.related = self.related
        return culprit

    def _negative_bias(self, relu: Any) -> str:
        """Where visible, why the ReLU is dead: the bias of the layer feeding it is all negative."""
        for child, _ in relu.next_functions:
            if child is None or not type(child).__name__.startswith("AddmmBackward"):
                continue
            first = child.next_functions[0][0] if child.next_functions else None
            bias = getattr(first, "variable", None)
            if isinstance(bias, torch.Tensor) and bias.numel() and bool((bias.detach() < 0).all()):
                text = f"; the bias feeding it is negative everywhere (max {float(bias.detach().max()):.3g})"
                where = None
                for table in (self.param_writes, self.data_written):
                    where = where or (table.get(bias) if table is not None else None)
                if where is not None:
                    self.related = where
                    text += f", set at {where.site.display}"
                return text
        return ""

    def relu_near(self, param: torch.Tensor, depth: int = 4) -> Any:
        """The ReLU-like node just downstream (toward the loss) of a parameter, if any."""
        node = self.acc_of.get(id(param))
        frontier = [node] if node is not None else []
        for _ in range(depth):
            nxt = []
            for n in frontier:
                for parent in self.parents.get(id(n), ()):
                    if type(parent).__name__ in _RELU:
                        return parent
                    nxt.append(parent)
            frontier = nxt
        return None


_PASS_THROUGH = (
    "TBackward",
    "ViewBackward",
    "ExpandBackward",
    "UnsqueezeBackward",
    "ReshapeAliasBackward",
    "PermuteBackward",
    "TransposeBackward",
    "UnsafeViewBackward",
    "ToCopyBackward",
)


def _near(node: Any) -> list[Any]:
    """``node``, its inputs' nodes, and theirs through shape-only ops (``t()``, views)."""
    found = [node]
    frontier = [node]
    for _ in range(3):
        nxt = []
        for n in frontier:
            for child, _ in getattr(n, "next_functions", ()):
                if child is None:
                    continue
                found.append(child)
                if type(child).__name__.startswith(_PASS_THROUGH):
                    nxt.append(child)
        frontier = nxt
    return found


def _zero_mask(node: Any) -> Site | None:
    """Where the constant that zeroed this op's input was made, when one of the products feeding
    it multiplied by a mask that is zero everywhere (see ``tracking._note_mask``)."""
    for n in _near(node):
        try:
            hit = n.metadata.get(MASK_KEY)
        except Exception:
            continue
        if hit is not None:
            site, mask = hit
            if mask.numel() and not bool(mask.detach().any()):
                return site
    return None


# Ops whose gradient toward an operand is a sum of what they received (broadcast, reduction):
# received non-zero, sent exactly zero means the summed terms cancelled.
_SUMMING = ("AddBackward", "SubBackward", "SumBackward", "MeanBackward", "ExpandBackward")


def cancellation(
    attributor: Attributor, param: torch.Tensor, culprit: Culprit | None
) -> Culprit | None:
    """An all-zero gradient that is a sum of non-zero terms cancelling exactly — by design, not a
    dead path: a bias under ``mean(a) - mean(b)`` (the terms meet where the gradient accumulates
    into the parameter), a constant shift under a softmax (they meet in a broadcast's sum).

    Returns a culprit whose ``related`` lists the terms' lines (info, not an error), or None.
    """
    if culprit is not None:
        if not culprit.node_name.startswith(_SUMMING):
            return None
        sites = [culprit.site] if culprit.site is not None else []
        return _cancelled(sites, culprit.module, culprit.node_name, 0)
    target = attributor.acc_of.get(id(param))
    terms: list[Any] = []
    parents = attributor.parents.get(id(target), []) if target is not None else []
    for parent in {id(p): p for p in parents}.values():
        sent = attributor.probe.sent.get(id(parent)) or []
        for i, (child, _) in enumerate(parent.next_functions):
            if child is target and i < len(sent) and sent[i] is not None and sent[i][0]:
                terms.append(parent)
                break
    # Terms from two ops at least: one op sending +g and -g to one tensor (``x - x``) is no
    # design anyone means.
    if len(terms) < 2:
        return None
    sites: list[Site | CallSite] = []
    for node in terms:
        site, _ = stamp_of(node)
        if site is not None and site not in sites:
            sites.append(site)
    return _cancelled(sites, None, "AccumulateGrad", len(terms))


def _cancelled(sites: list[Any], module: Any, node: str, count: int) -> Culprit:
    lines = ", ".join(f"line {s.line}" for s in sites) or "lines not recorded"
    terms = f"{count} non-zero terms" if count else "non-zero terms"
    message = KINDS["zero_grad_flow"].message("cancelled", terms=terms, lines=lines, node=node)
    first = sites[0] if sites else None
    return Culprit("zero_grad_flow", first, module, message, related=None, node_name=node)


def _function_culprit(node: Any, fn_cls: type) -> Culprit:
    """A custom autograd.Function whose backward() sent None (or zeros): point at its return."""
    import ast
    import inspect
    import textwrap

    backward = getattr(fn_cls, "backward", None)
    code = getattr(backward, "__code__", None)
    site = None
    if code is not None:
        line = code.co_firstlineno
        try:
            lines, start = inspect.getsourcelines(backward)
            returns = [
                n
                for n in ast.walk(ast.parse(textwrap.dedent("".join(lines))))
                if isinstance(n, ast.Return)
            ]
            if len(returns) == 1:
                line = start + returns[0].lineno - 1
        except (OSError, TypeError, SyntaxError):
            pass
        site = Site(code.co_filename, line, code.co_name)
    return Culprit(
        "function_returns_none",
        site,
        None,
        KINDS["function_returns_none"].message(function=fn_cls.__name__),
        node_name=type(node).__name__,
    )


def describe(node: Any, empty: bool, shape: tuple[int, ...] | None = None) -> Culprit:
    name = type(node).__name__
    fn_cls = getattr(node, "_forward_cls", None)
    if isinstance(fn_cls, type):
        return _function_culprit(node, fn_cls)
    site, module = stamp_of(node)
    if name in _ZERO_DERIVATIVE:
        message = KINDS["nondifferentiable_op"].message(
            "zero_derivative", op=_ZERO_DERIVATIVE[name], node=name
        )
        return Culprit("nondifferentiable_op", site, module, message, node_name=name)
    zero = KINDS["zero_grad_flow"]
    what = ""
    if empty:
        variant = "empty_selection"
    elif name in _RELU:
        variant = "dead_relu"
        units = shape[-1] if shape else None  # saved tensors are freed by now: the hook kept it
        what = f"all {units} units" if units else "every unit"
    elif name in _CLAMP:
        variant = "saturated_clamp"
    elif name == "MulBackward1":
        variant = "times_zero_number"
    elif name.startswith("MulBackward"):
        variant = "times_zero_tensor"
    elif name.startswith("WhereBackward"):
        variant = "where_unselected"
    elif name.startswith(("IndexBackward", "MaskedSelectBackward", "MaskedFillBackward")):
        variant = "empty_mask"
    else:
        variant = "default"
    return Culprit(
        "zero_grad_flow", site, module, zero.message(variant, what=what, node=name), node_name=name
    )


def grad_stats(
    grads: list[torch.Tensor | None], rows: list[bool] | None = None
) -> tuple[list[float | None], list[float | None]]:
    """The 2-norm of each gradient and, for each matrix gradient that ``rows`` asks for (all
    when None), the fraction of its output units (rows) whose gradient is exactly zero (None for
    anything else).

    One fused ``_foreach_norm`` over every gradient gives the norms; a matrix asked for gets its
    per-row 2-norms too (per-row ``any()`` or max-abs reductions are 5-10x slower on CPU; a row
    whose squares all underflow has a zero norm without being zero, so the zero-norm rows are
    looked at again, exactly). The results come back in one copy per device and dtype. Anything
    the batched path refuses (mixed devices) is measured one by one; a sparse gradient has a norm
    and no rows.
    """
    n = len(grads)
    norms: list[float | None] = [None] * n
    deads: list[float | None] = [None] * n
    present: list[tuple[int, torch.Tensor]] = []
    for i, g in enumerate(grads):
        if g is None:
            continue
        if g.requires_grad:  # (create_graph=True: a gradient with its own graph)
            g = g.detach()
        if g.is_sparse:  # (an embedding with sparse=True)
            norms[i] = float(_values(g).norm())
        else:
            present.append((i, g))
    if not present:
        return norms, deads
    wanted = [
        (i, g) for i, g in present if g.dim() >= 2 and g.shape[0] >= 2 and (rows is None or rows[i])
    ]
    try:  # (detached: no grad mode needed)
        _batched_stats(present, wanted, norms, deads)
    except (RuntimeError, TypeError, ValueError):
        for i, g in present:
            norms[i] = float(g.norm())
        for i, g in wanted:
            live = int(g.reshape(g.shape[0], -1).any(dim=1).sum())
            deads[i] = 1.0 - live / g.shape[0]
    return norms, deads


def _batched_stats(
    present: list[tuple[int, torch.Tensor]],
    wanted: list[tuple[int, torch.Tensor]],
    norms: list[float | None],
    deads: list[float | None],
) -> None:
    low = [g.dtype in _LOW_PRECISION for _, g in present]
    if any(low):  # (accumulated in float32: a half-precision sum of squares overflows)
        half = [g for (_, g), lo in zip(present, low, strict=True) if lo]
        full = [g for (_, g), lo in zip(present, low, strict=True) if not lo]
        wide = iter(torch._foreach_norm(half, 2.0, dtype=torch.float32))
        rest = iter(torch._foreach_norm(full, 2.0) if full else ())
        scalars = [next(wide) if lo else next(rest) for lo in low]
    else:
        scalars = list(torch._foreach_norm([g for _, g in present], 2.0))
    matrices: list[tuple[int, torch.Tensor, torch.Tensor, bool]] = []
    for i, g in wanted:
        rows = g if g.dim() == 2 else g.reshape(g.shape[0], -1)
        # In float64 no square of a float32 (or half) value underflows: a zero row norm is a
        # zero row. That pass costs 2-3x more, so a big matrix is summed in float32 and its
        # zero-norm rows are looked at again, exactly (and a float64 gradient's always are).
        exact = g.dtype != torch.float64 and rows.numel() <= _EXACT_ROWS
        dtype = torch.float64 if exact else (torch.float32 if g.dtype in _LOW_PRECISION else None)
        rn = torch.linalg.vector_norm(rows, 2, 1, dtype=dtype)
        matrices.append((i, rows, rn, exact))
        scalars.append(torch.count_nonzero(rn))
    values = _floats(scalars)
    for (i, _), value in zip(present, values, strict=False):
        norms[i] = value
    for (i, rows, rn, exact), live in zip(matrices, values[len(present) :], strict=True):
        r = rows.shape[0]
        if live < r and not exact:  # zero-norm rows: zero, unless their squares underflowed
            live += float(torch.count_nonzero(rows[rn == 0].count_nonzero(1)))
        deads[i] = 1.0 - live / r


_EXACT_ROWS = 1 << 16  # matrices up to this size get their row norms in float64

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _floats(scalars: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[float]:
    """0-d tensors as Python floats, with one copy per device and dtype (a model may span CPU
    and GPU); on CPU, where reading a value costs no copy, one by one (a stack costs more)."""
    if all(x.is_cpu for x in scalars):
        return [float(x) for x in scalars]
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, x in enumerate(scalars):
        groups.setdefault((x.device, x.dtype), []).append(i)
    out = [0.0] * len(scalars)
    for indices in groups.values():
        got = torch.stack([scalars[i] for i in indices]).tolist()
        for i, v in zip(indices, got, strict=True):
            out[i] = float(v)
    return out


def is_zero(grad: torch.Tensor, norm: float, atol: float) -> bool:
    """All of ``grad`` within ``atol`` of zero (exactly zero when ``atol`` is 0); ``norm`` is its
    2-norm from :func:`grad_stats`, which settles almost every case without another op."""
    if norm != norm:  # NaN
        return False
    if atol <= 0:
        # A norm of 0 can also be underflow (every element below ~1e-19 in float32): ask any().
        return norm == 0 and not bool(_values(grad.detach()).any())
    if norm <= atol:
        return True
    g = _values(grad.detach())
    if norm > atol * math.sqrt(max(g.numel(), 1)):  # then max |g| >= norm / sqrt(n) > atol
        return False
    return float(g.abs().max()) <= atol


def _values(g: torch.Tensor) -> torch.Tensor:
    return g.coalesce().values() if g.is_sparse else g
