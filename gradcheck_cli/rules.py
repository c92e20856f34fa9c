"""The registry of finding kinds: one entry per kind holds everything said about it (no torch here).

A kind's stable id, name, title, fix, default severity, console headline and message templates live
here and nowhere else. The diagnosis looks messages up here, the console/JSON/SARIF/GitHub outputs
read titles and hints here, and the config schema's list of ignorable kinds is generated from it
(:func:`gradcheck_cli.config.config_schema`). Adding a kind: one entry below, its detection code, a
sample script and a test (ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Kind:
    id: str
    kind: str
    title: str
    hint: str
    severity: str = "error"
    # Message templates by variant ("default" unless a detector has several); str.format fields.
    messages: dict[str, str] = field(default_factory=dict, hash=False)
    headline: str | None = None  # the console's first line, when not "<names> got no gradient"
    region: str | None = None  # grad-mode kinds: the words for the region the op ran in

    def message(self, variant: str = "default", **fields: Any) -> str:
        return self.messages[variant].format(**fields)

    @property
    def doc(self) -> str | None:
        """The kind's long documentation (``rule_docs/<kind>.md``), when one is shipped."""
        path = resources.files("gradcheck_cli").joinpath("rule_docs", f"{self.kind}.md")
        return path.read_text(encoding="utf-8") if path.is_file() else None


Rule = Kind  # the name SARIF and older callers use

_REGION = "computed {region}: no graph was recorded for these parameters"
_ROUNDTRIP = (
    "the value left the graph as {what} (`{escape}`{place}) and came back through `{op}`: "
    "no gradient flows back"
)

_ESCAPED = (
    "`{op}` turned the value into {what} here: whatever was computed from it afterwards carries "
    "no gradient back to these parameters"
)


KINDS: dict[str, Kind] = {
    r.kind: r
    for r in [
        Kind("GC101", "detach", "gradient cut by .detach()",
             "Remove the .detach() if gradients should flow through it (keep it only for values that must stay constant, e.g. targets).",
             messages={"default": "`.detach()` cut the graph between these parameters and the loss"}),
        Kind("GC102", "data_attr", "gradient cut by .data",
             "Use the tensor itself instead of .data (for an in-place update without tracking, use `with torch.no_grad():`).",
             messages={"default": "`.data` returned a tensor outside the graph, cutting these parameters off the loss"}),
        Kind("GC103", "no_grad", "computed inside torch.no_grad()",
             "Move the forward pass of these parameters out of the torch.no_grad() block (or drop the decorator).",
             messages={"default": _REGION}, region="inside `torch.no_grad()`"),
        Kind("GC104", "set_grad_enabled", "grad mode switched off by torch.set_grad_enabled(False)",
             "Switch grad mode back on before this computation, or use `with torch.set_grad_enabled(...)` so it is restored.",
             messages={"default": _REGION}, region="while grad mode was switched off by `torch.set_grad_enabled(False)`"),
        Kind("GC105", "inference_mode", "computed inside torch.inference_mode()",
             "Do not run parts of the training forward pass under torch.inference_mode(); it is for evaluation only.",
             messages={"default": _REGION}, region="inside `torch.inference_mode()`"),
        Kind("GC106", "requires_grad_false", "tensor does not require grad",
             "Create it with requires_grad=True (or call .requires_grad_()), or stop freezing it here.",
             messages={"default": "does not require grad",
                       "after_optimizer": "requires_grad was turned off here after an optimizer was built to train these tensors, before it ever updated them: they never learn",
                       "loss_frozen": "requires_grad was turned off here for the parameters the loss uses, so the loss does not require grad and backward() raised"}),
        Kind("GC107", "non_leaf", "expected tensor is not a leaf",
             "Move/cast the tensor before enabling grad (e.g. torch.randn(..., device=d, dtype=t, requires_grad=True)) or wrap it in nn.Parameter, so the optimizer sees the leaf."),
        Kind("GC108", "rewrap_tensor", "tensor re-wrapped with torch.tensor()",
             "Use the tensor directly (or .to()/.clone()); torch.tensor(t) copies values out of the graph.",
             messages={"default": "`{op}(tensor)` copied the values into a new tensor with no history"}),
        Kind("GC109", "python_scalar_roundtrip", "value went through a Python number",
             "Keep the value as a tensor: use the tensor instead of .item()/.tolist()/float() and torch.tensor(...).",
             messages={"default": _ROUNDTRIP.replace("{what}", "a Python number"),
                       "escaped": _ESCAPED.replace("{what}", "a Python number")}),
        Kind("GC110", "numpy_roundtrip", "value went through NumPy",
             "Do the computation with torch ops; NumPy arrays carry no gradient.",
             messages={"default": _ROUNDTRIP.replace("{what}", "a NumPy array"),
                       "escaped": _ESCAPED.replace("{what}", "a NumPy array")}),
        Kind("GC111", "nondifferentiable_op", "non-differentiable operation on the gradient path",
             "Replace the hard operation (argmax, comparison, integer cast) with a differentiable relaxation (softmax, sigmoid, straight-through estimator).",
             messages={"default": "`{op}` has no gradient: its output does not depend differentiably on these parameters",
                       "zero_derivative": "`{op}` has a zero derivative everywhere: no gradient passes through it ({node})"}),
        Kind("GC112", "function_returns_none", "custom autograd.Function returned no gradient",
             "Return a gradient (not None) from backward() for every input that requires grad.",
             messages={"default": "`{function}.backward()` returned no gradient for an input that requires grad"}),
        Kind("GC120", "unused_parameter", "parameter never contributed to the loss",
             "Call the module in forward() and use its output in the loss, or remove it (DDP needs find_unused_parameters=True otherwise).",
             messages={
                 # appended to "`<module>` ran, but ..." for a part a library built (a warning)
                 "library_part": ": a part of the library model `{holder}` ({cls}) that this loss does not use",
                 "library_hint": "`{holder}` ({cls}) is library code: if this part's output is not needed, build it without that part (many models have an option for it), or list these parameters under `allow_none` in gradcheck.yaml (`gradcheck init` offers them).",
                 # routing (gradcheck_cli/routing.py), decided when the check window ends
                 "routed": "members of `{container}` ({cls}) were skipped in some checked calls and trained in the others (data-dependent routing, layer drop, early exit): {counts}",
                 "conditional": "{modules} {were} skipped in some checked calls (data-dependent control flow, a dropped branch) and trained in the others: got a non-zero gradient in {ran} of {calls} checked calls",
                 "never_routed": "{members} never ran in any of the {calls} checked calls, while other members of `{container}` ({cls}) did: nothing was routed to {them}",
                 "window_short": " (only {calls} checked call{s}: too few to tell a rarely used member from a dead one; check more with --steps)",
                 "never_routed_hint": "Check the routing (router, top-k, mask or capacity) that chooses among the members of `{container}`: it never selected these members (expert collapse, a dead branch, a wrong mask). If they are not meant to train, list them under `allow_none`; to give a rare member more chances to run, widen the check window with `--steps`.",
             }),
        Kind("GC121", "unregistered_parameter", "tensor used as a parameter is not registered",
             "Use nn.ModuleList / nn.ModuleDict / nn.Parameter so model.parameters() (and the optimizer) include it."),
        Kind("GC140", "not_frozen", "a tensor listed under `frozen` still requires grad",
             "Freeze it with requires_grad_(False) (on the parameters, not just the module attribute) before training."),
        Kind("GC130", "loss_not_differentiable", "backward() on a loss that does not require grad",
             "Make sure the loss is computed from parameters with grad mode on and without cutting the graph.",
             headline="backward() failed: the loss does not require grad"),
        Kind("GC150", "rank_divergent", "parameter got no gradient on some ranks only",
             "Make every rank run the same layers (or compute the branch's loss on every rank); DDP's all-reduce otherwise hides the missing gradient."),
        Kind("GC201", "zero_grad_flow", "gradient is all zero",
             "Find why the op passes no gradient (dead ReLU, saturated clamp, zero mask) and fix its input range or initialisation.",
             messages={
                 "default": "`{node}` passed an all-zero gradient toward these parameters",
                 "empty_selection": "the selection feeding this op is empty, so it passes no gradient ({node})",
                 "dead_relu": "{what} of this ReLU are inactive for this batch (dead ReLU, {node})",
                 "saturated_clamp": "the clamp is saturated: every value lies outside its range ({node})",
                 "times_zero_number": "multiplied by the number 0 (a weight or schedule that is zero) ({node})",
                 "times_zero_tensor": "multiplied by a tensor that is zero everywhere (a mask or weight) ({node})",
                 "where_unselected": "`torch.where` never selects the branch these parameters feed ({node})",
                 "empty_mask": "the selection/mask passes no element of this value ({node})",
                 "zero_mask": "the mask `{code}` is zero everywhere, so nothing passes through to these parameters ({node})",
                 "cancelled": "the gradient is a sum of {terms} that cancel exactly ({lines}; {node}): by design (a bias under mean(a) - mean(b), a shift under a softmax), not a dead path",
             }),
        Kind("GC301", "param_not_in_optimizer", "parameter receives a gradient but no optimizer updates it",
             "Build the optimizer from model.parameters() after all layers exist (or add_param_group)."),
        Kind("GC302", "stale_optimizer", "optimizer still holds replaced parameters",
             "Build (or rebuild) the optimizer after replacing layers, or add the new parameters with add_param_group."),
        Kind("GC303", "grad_wiped", "gradients cleared between backward() and step()",
             "Call zero_grad() before backward() (or after step()), never between backward() and step()."),
        Kind("GC304", "step_without_grad", "optimizer.step() with no gradient on any of its parameters",
             "Only call step() after a backward() that reaches these parameters.", "warning"),
        Kind("GC305", "frozen_weight_decay", "frozen parameters still decayed by the optimizer",
             "Remove frozen parameters from the optimizer (or set their .grad to None with zero_grad(set_to_none=True)).", "warning"),
    ]
}  # fmt: skip


RULES = KINDS  # the older name


def rule_for(kind: str) -> Kind:
    return KINDS[kind]


def is_library_part(kind: str, message: str) -> bool:
    """Is this finding an unused part of a library model (``gradcheck init`` offers it for
    ``allow_none``)?"""
    template = KINDS["unused_parameter"].messages["library_part"]
    return kind == "unused_parameter" and template.split("`", 1)[0] in message


def ignorable() -> list[str]:
    """What ``ignore`` accepts: every kind, then every id (the config schema's enum)."""
    return [*KINDS, *(k.id for k in KINDS.values())]
