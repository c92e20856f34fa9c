"""Seeing through FSDP2 (``torch.distributed.fsdp.fully_shard``): the user's parameters are the
sharded ones.

``fully_shard`` replaces each parameter by a sharded DTensor (what ``model.parameters()`` and so
the optimizer hold) and, around each forward and backward, all-gathers it into a temporary plain
parameter that it swaps into the module (``module.weight``) and that the autograd graph uses as
its leaf; after the backward it reduce-scatters that gradient into the sharded parameter's
``.grad``. Here the temporary parameters are mapped back to the user's ones (:func:`aliases`), so
the graph walk, the cuts, the names and the optimizer all speak of the same tensor, and gradients
are read from the local shard (:func:`local`) without a collective. A gradient that is all-zero on
this rank's shard is only all-zero when it is on every rank's: :func:`sharded_names` tells the
merge of the ranks' reports which names those are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def _fsdp_module_type() -> type | None:
    # Not imported here: a script that never imported FSDP has no FSDP module (and a run without
    # it pays nothing for the import).
    home = sys.modules.get("torch.distributed.fsdp")
    return getattr(home, "FSDPModule", None)


def _fsdp_params(module: nn.Module) -> list[Any]:
    try:
        group = module._get_fsdp_state()._fsdp_param_group  # type: ignore[operator]
    except (AttributeError, RuntimeError):
        return []
    return list(group.fsdp_params) if group is not None else []


def aliases(modules: Iterable[nn.Module]) -> dict[int, torch.Tensor]:
    """id of each unsharded parameter FSDP2 swaps into ``modules`` -> the user's sharded one.

    The unsharded parameter object is created at the first all-gather and reused by the later
    ones, so a map built at a backward call holds for the graph of that call.
    """
    fsdp_type = _fsdp_module_type()
    found: dict[int, torch.Tensor] = {}
    if fsdp_type is None:
        return found
    for module in modules:
        if not isinstance(module, fsdp_type):
            continue
        for fp in _fsdp_params(module):
            unsharded = getattr(fp, "_unsharded_param", None)
            if unsharded is not None and unsharded is not fp.sharded_param:
                found[id(unsharded)] = fp.sharded_param
    return found


def local(grad: torch.Tensor | None) -> torch.Tensor | None:
    """This rank's shard of a DTensor gradient (anything else as it is): read without a
    collective, which would hang if the ranks did not all read the same gradients."""
    if grad is None or type(grad) is torch.Tensor:
        return grad
    to_local = getattr(grad, "to_local", None)
    return to_local() if to_local is not None and _is_dtensor(grad) else grad


def _is_dtensor(t: Any) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "placements")


def is_sharded(t: torch.Tensor) -> bool:
    """A DTensor split across ranks (``Shard`` placement), not one replicated on each."""
    return _is_dtensor(t) and any(p.is_shard() for p in t.placements)  # type: ignore[attr-defined]


def sharded_names(named: dict[int, torch.Tensor], name_of: Any) -> list[str]:
    """The names of the sharded tensors among ``named``."""
    return sorted(n for t in named.values() if is_sharded(t) and (n := name_of(t)) is not None)
