"""The config's name lists (``expect``, ``allow_none``, ``allow_zero``, ``frozen``) resolved to the
names a run reports, and applied to a backward call's findings."""

from __future__ import annotations

import re
from typing import Any

import torch

from gradcheck_cli.config import Config, match_names, unmatched_error
from gradcheck_cli.errors import EXIT_USAGE, GradcheckExit
from gradcheck_cli.findings import Raw
from gradcheck_cli.graph import Walk
from gradcheck_cli.naming import Names
from gradcheck_cli.sites import CallSite
from gradcheck_cli.unregistered import plain_state

_KEYS = ("expect", "allow_none", "allow_zero", "frozen")


class NamePatterns:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._resolved: dict[str, set[str]] | None = None
        self.notes: list[str] = []  # unmatched names of a lenient (discovered, other-script) config

    @property
    def active(self) -> bool:
        return any(getattr(self.config, key) for key in _KEYS)

    def resolve(self, names: Names) -> dict[str, set[str]]:
        """Each list as a set of reported names (an unmatched entry ends the run)."""
        if self._resolved is not None:
            return self._resolved
        canonical = named_tensors(names)
        aliases: dict[str, str] = {}
        for name in canonical:
            aliases[name] = name
            # `model[2].bias` is how the user indexes; named_parameters() says `model.2.bias`.
            aliases.setdefault(re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", name), name)
        resolved: dict[str, set[str]] = {}
        for key in _KEYS:
            entries = getattr(self.config, key)
            matched, unmatched = match_names(entries, list(aliases))
            for pattern in unmatched:
                error = unmatched_error(
                    self.config, key, pattern, entries.index(pattern), list(canonical)
                )
                if not self.config.lenient_names:
                    raise GradcheckExit(EXIT_USAGE, error.message)
                self.notes.append(_unmatched_warning(error.message, self.config))
            resolved[key] = {aliases[n] for hits in matched.values() for n in hits}
        self._resolved = resolved
        return resolved

    def apply(
        self,
        findings: list[Raw],
        resolved: dict[str, set[str]],
        tensors: dict[str, torch.Tensor],
        walk: Walk,
        where: CallSite | None,
    ) -> list[Raw]:
        """``allow_none`` / ``allow_zero`` exceptions, and ``frozen`` tensors that still learn."""
        kept: list[Raw] = []
        for raw in findings:
            if raw.kind == "requires_grad_false":
                raw.names = [n for n in raw.names if n not in resolved["frozen"]]
                if raw.names:
                    kept.append(raw)
                continue
            allowed = resolved["allow_zero"] if raw.grad_state == "zero" else resolved["allow_none"]
            if raw.grad_state in ("none", "zero", "raised") and allowed and raw.names:
                raw.names = [n for n in raw.names if n not in allowed]
                if not raw.names:
                    continue
            kept.append(raw)
        thawed = [  # model order, as in every other finding
            n
            for n, t in tensors.items()
            if n in resolved["frozen"] and (t.requires_grad or id(t) in walk.leaves)
        ]
        if thawed:
            reached = any(id(tensors[n]) in walk.leaves for n in thawed)
            kept.append(
                Raw(
                    "not_frozen",
                    where,
                    thawed,
                    _not_frozen_message(self.config.where("frozen") or "config", reached),
                    grad_state="present",
                )
            )
        return kept


def _unmatched_warning(message: str, config: Config) -> str:
    return (
        f"{message} (ignored, not an error: this discovered config was written for {config.script})"
    )


def _not_frozen_message(where: str, reached: bool) -> str:
    """GC140's words: only say the tensor received a gradient when this backward reached it."""
    got = (
        "receives a gradient"
        if reached
        else "got no gradient in this backward call, but would train"
    )
    return (
        f"listed under `frozen` ({where}) but still requires grad and {got}: "
        "the freeze did not take effect"
    )


def in_model_order(found: list[str], order: dict[str, int]) -> list[str]:
    """Tensor names as the model lists them (``weight, bias``), unknown names last, as found."""
    return sorted(found, key=lambda n: order.get(n, len(order)))


def named_tensors(names: Names) -> dict[str, Any]:
    """Every tensor the run can name, by its reported name."""
    found = {qual: names.params[key] for key, qual in names.param_name.items()}
    found.update({name: t for name, t in names.leaves.values()})
    found.update({u.name: u.tensor for u in names.unregistered.values()})
    for name, ref in names.non_leaves.values():
        t = ref()
        if t is not None:
            found.setdefault(name, t)
    found.update({n: t for n, t in plain_state(names) if n not in found})
    return found
