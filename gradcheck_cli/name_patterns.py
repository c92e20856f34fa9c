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

_KEYS = ("expect", "allow_none", "allow_zero", "frozen")


class NamePatterns:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._resolved: dict[str, set[str]] | None = None

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
            if unmatched:
                error = unmatched_error(
                    self.config, key, unmatched[0], entries.index(unmatched[0]), list(canonical)
                )
                raise GradcheckExit(EXIT_USAGE, error.message)
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
            if raw.kind == "requires_grad_false" and raw.severity == "info":
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
        thawed = [
            n
            for n in sorted(resolved["frozen"])
            if tensors[n].requires_grad or id(tensors[n]) in walk.leaves
        ]
        if thawed:
            where_set = self.config.where("frozen") or "config"
            kept.append(
                Raw(
                    "not_frozen",
                    where,
                    thawed,
                    f"listed under `frozen` ({where_set}) but still requires grad "
                    "and receives a gradient: the freeze did not take effect",
                    grad_state="present",
                )
            )
        return kept


def named_tensors(names: Names) -> dict[str, Any]:
    """Every tensor the run can name, by its reported name."""
    found = {qual: names.params[key] for key, qual in names.param_name.items()}
    found.update({name: t for name, t in names.leaves.values()})
    found.update({u.name: u.tensor for u in names.unregistered.values()})
    return found
