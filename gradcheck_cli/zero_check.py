"""All-zero (or, inside the graph, missing) gradients after a checked backward call, with the op
that killed them, and layers with some dead units (info).

Hooking every node costs more than the backward itself, so the zero-gradient probe is attached
only to the checked backward call after one that showed such a gradient (they are structural: a
dead ReLU, a zero mask); until then the parameter is *pending*. :class:`ZeroCheck` keeps that
schedule and what each probed loss was explained by.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from gradcheck_cli import compiled, fsdp, zeros
from gradcheck_cli import model as m
from gradcheck_cli.cutpath import zero_path
from gradcheck_cli.diagnose import Result
from gradcheck_cli.findings import FindingBook, Raw, unattributed
from gradcheck_cli.graph import Walk, stamp_of
from gradcheck_cli.naming import Names
from gradcheck_cli.tracking import Tracker


class ZeroCheck:
    def __init__(self, tracker: Tracker, book: FindingBook, zero_atol: float) -> None:
        self.tracker = tracker
        self.book = book
        self.zero_atol = zero_atol
        # Gradients lost without an identified op, waiting for the probe: name -> (state, call).
        self.pending: dict[str, tuple[str, int]] = {}
        # (name, "zero" | "none") -> what explained it at a probed backward call
        self._explained: dict[tuple[str, str], Raw] = {}
        self.stepped: set[int] = set()  # tensors an optimizer step has updated
        self.nonzero_seen: set[str] = set()  # names that got a non-zero gradient at a checked call
        # Does a ReLU-like op sit just downstream of the tensor (by name)? Only there can zero
        # rows be dead units: the others' rows are not measured (an embedding's unused rows).
        self._relu_after: dict[str, bool] = {}

    def findings(
        self,
        result: Result,
        walk: Walk,
        probe: zeros.Probe | None,
        losses: list[torch.Tensor],
        names: Names,
        record: m.Step,
        record_norms: bool,
        stamped: bool = True,
    ) -> list[Raw]:
        """Findings for the expected tensors of ``result``; fills ``record.checked``.
        ``stamped``: the op tracker stamped this call's ops with their sites."""
        found: list[Raw] = []
        attributor: zeros.Attributor | None = None

        def attribute() -> zeros.Attributor:
            nonlocal attributor
            if attributor is None:
                starts = [x.grad_fn for x in losses]
                attributor = zeros.Attributor(
                    walk, probe or zeros.Probe(), starts, self.tracker, self.stepped
                )
            return attributor

        grads = [
            fsdp.local(t.grad) if (t is not None and state == "ok") else None
            for _, state, t in result.checked
        ]
        relu_after = self._relu_after
        unknown = [
            (name, t)
            for (name, _, t), g in zip(result.checked, grads, strict=True)
            if g is not None
            and g.dim() >= 2
            and name not in relu_after
            and walk.complete  # (unknown ones are measured: their rows may be dead units)
            and id(t) in walk.acc
        ]
        for name, t in unknown:  # (once per tensor: the op after a weight stays the same)
            relu_after[name] = attribute().relu_near(t) is not None
        norms, deads = zeros.grad_stats(
            grads, [relu_after.get(name, True) for name, _, _ in result.checked]
        )
        for (name, state, t), grad, grad_norm, dead_rows in zip(
            result.checked, grads, norms, deads, strict=True
        ):
            dead = None
            lost = None
            if state == "ok" and t is not None and grad is None:
                state = lost = "none"  # in the graph, yet no gradient arrived
            elif grad is not None and zeros.is_zero(grad, grad_norm or 0.0, self.zero_atol):
                state = lost = "zero"
            if lost is None and grad is not None:
                self.nonzero_seen.add(name)
                self.pending.pop(name, None)  # a transient zero (a dropped branch) is no finding
            if lost is not None and t is not None:
                raw = self._lost(name, lost, t, probe, attribute, names, record.index)
                if raw is not None:
                    found.append(raw)
            elif grad is not None and dead_rows:
                if not stamped and self.book.reported_dead(name):
                    dead = dead_rows  # (said once already; without a site nothing new is said)
                    raw = None
                else:
                    raw = self._dead_units(attribute(), t, name, dead_rows, names)
                if raw is not None:
                    dead = dead_rows  # (zero rows with no ReLU behind them: unused embeddings)
                    if raw.where is not None or not self.book.reported_dead(name):
                        found.append(raw)  # (ops are stamped on some checked calls only)
            norm = grad_norm if record_norms else None
            record.checked.append(m.Checked(name, state, norm, dead))
        return found

    def _lost(
        self,
        name: str,
        lost: str,
        t: torch.Tensor,
        probe: zeros.Probe | None,
        attribute: Any,
        names: Names,
        index: int,
    ) -> Raw | None:
        known = self._explained.get((name, lost))
        if probe is None and known is not None:
            # Lost the same way as at an earlier probed call: the same finding, one more call,
            # and no probe (hooking every node) again.
            return dataclasses.replace(known, names=[name])
        if probe is None:
            self.pending[name] = (lost, index)
            return None
        culprit = compiled.explain(attribute().culprit(t), names, t)
        cancelled = zeros.cancellation(attribute(), t, culprit) if lost == "zero" else None
        if cancelled is not None:
            raw = self._culprit_raw(cancelled, name, names, lost)
            raw.severity = "info"
        elif culprit is not None:
            raw = self._culprit_raw(culprit, name, names, lost)
        else:
            raw = unattributed(name, lost, "no single op on its path could be identified")
        if cancelled is not None or raw.severity != "info":
            # (an expected zero of a zero-initialised weight is looked at again: it must not persist)
            self._explained[(name, lost)] = dataclasses.replace(raw, names=[name], earlier_steps=[])
        pending = self.pending.pop(name, None)
        if pending is not None and pending[0] == lost:
            raw.earlier_steps.append(pending[1])
        return raw

    def _culprit_raw(self, c: zeros.Culprit, name: str, names: Names, lost: str) -> Raw:
        message = _with_module(c.message, c.module, names)
        if c.zeroed is not None:
            operand = names.name_of(c.zeroed) or "a tensor"
            if c.severity == "info":  # one line for every layer's copy (`h.*.lora_B.weight`)
                operand = re.sub(r"\.\d+\.", ".*.", operand)
            message = message.replace("{operand}", f"`{operand}`")
        related = [c.related] if c.related is not None else []
        path = zero_path(c.node_name, c.site, names.module_name(c.module) if c.module else None)
        return Raw(
            c.kind,
            c.site,
            [name],
            message,
            grad_state=lost,
            related=related,
            hint=c.hint,
            path=path,
            severity=c.severity,
        )

    @staticmethod
    def _dead_units(
        attributor: zeros.Attributor, t: torch.Tensor, name: str, dead: float, names: Names
    ) -> Raw | None:
        """Info on a layer with some dead ReLU units (None when no ReLU-like op is behind it)."""
        relu = attributor.relu_near(t)
        if relu is None:
            return None
        site, module = stamp_of(relu)
        owner = name.rsplit(".", 1)[0]
        message = _with_module(
            f"{dead:.0%} of the units of `{owner}` received zero gradient (dead ReLUs)",
            module,
            names,
        )
        return Raw("zero_grad_flow", site, [name], message, grad_state="zero", severity="info")

    def flush(self) -> None:
        """The run is over: what still waits for its probe is reported without an op."""
        for name, (lost, index) in self.pending.items():
            why = "it was found at the last checked backward, so the op could not be traced (check one more: --steps)"
            self.book.add(unattributed(name, lost, why), index)
        self.pending.clear()
        self._demote_transient()

    def _demote_transient(self) -> None:
        """An all-zero gradient at some checked calls only — a branch dropped by stochastic depth,
        an expert that got an empty batch — is information: the tensors learn in the others."""
        for f in self.book.values():
            if (
                f.kind == "zero_grad_flow"
                and f.severity != "info"
                and f.grad_state == "zero"
                and f.parameters
                and all(n in self.nonzero_seen for n in f.parameters)
            ):
                f.severity = "info"
                f.message += (
                    f" — only at backward call{'s' if len(f.steps) != 1 else ''} "
                    f"{', '.join(map(str, f.steps[:8]))}: these tensors got a non-zero gradient at "
                    "other checked calls (a dropped branch, an empty batch)"
                )


def _with_module(message: str, module: Any, names: Names) -> str:
    # Only a leaf module (nn.ReLU inside a Sequential) says more than the source line does.
    if module is None or next(module.children(), None) is not None:
        return message
    mod_name = names.module_name(module)
    return f"{message} [in `{mod_name}` ({type(module).__name__})]" if mod_name else message
