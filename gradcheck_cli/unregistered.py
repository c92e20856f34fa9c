"""Module state the module never registered: ``self.codebook = torch.randn(k, d)`` (a plain tensor
attribute), ``self.blocks = [nn.Linear(...), ...]`` (modules in a plain list or dict).

Such state is not in ``model.parameters()`` (no optimizer built from it trains it), not moved by
``model.to(device)``, not in ``state_dict()`` and not unfrozen by ``requires_grad_(True)``. It is
reported at the assignment in ``__init__`` whether or not anything requires grad — but tensors the
user trains on purpose are left alone: those some optimizer holds (each Forward-Forward layer has
its own), and those the user updates by hand (``w -= lr * w.grad`` under ``no_grad``). The second
can only be known after the update, so the findings are settled when the run ends
(:meth:`UnregisteredCheck.flush`).
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradcheck_cli.findings import FindingBook, Raw
from gradcheck_cli.naming import Names, attribute_site
from gradcheck_cli.sites import is_user_file

if TYPE_CHECKING:
    from gradcheck_cli.diagnose import Context
    from gradcheck_cli.tracking import Tracker


@dataclass
class _Pending:
    raw: Raw
    steps: list[int]
    # name -> (tensor, what it looked like when found): a change later means a hand update
    tensors: dict[str, tuple[torch.Tensor, tuple[Any, ...]]] = field(default_factory=dict)


def consequences(owner: str, what: str) -> str:
    """The finding's words: what an unregistered tensor misses out on."""
    return (
        f"`{owner}` is {what}, not registered with the module: it is not in "
        f"{owner.split('.')[0]}.parameters() (so no optimizer built from it trains it), "
        "not moved by .to(device), not saved in state_dict(), and not unfrozen by "
        "requires_grad_(True)"
    )


class UnregisteredCheck:
    """Collects unregistered state at each checked backward; reports it when the run ends."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._pending: dict[tuple[int, str], _Pending] = {}
        self._last: list[tuple[int, str]] = []  # what the last note() found

    def note(self, ctx: Context, index: int) -> None:
        """Record what this backward's models hold outside their parameters (tensors an
        optimizer holds are trained on purpose, whatever holds them)."""
        held = set().union(*ctx.optimizer_groups) if ctx.optimizer_groups else set()
        self._last = []
        for key, raw, tensors in _found(ctx):
            tensors = [(n, t) for n, t in tensors if id(t) not in held]
            if not tensors:
                continue
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(raw, [])
            if index not in pending.steps:
                pending.steps.append(index)
            self._last.append(key)
            for name, t in tensors:
                pending.tensors.setdefault(name, (t, self._looks(t)))

    def repeat(self, index: int) -> None:
        """Backward call ``index`` was checked while the op tracker slept (no module hook saw
        which modules ran): it holds what the last call noted."""
        for key in self._last:
            pending = self._pending.get(key)
            if pending is not None and index not in pending.steps:
                pending.steps.append(index)

    def flush(self, book: FindingBook) -> None:
        """Report what was never trained by hand (the run is over)."""
        for pending in self._pending.values():
            raw = pending.raw
            raw.names = [
                name for name, (t, seen) in pending.tensors.items() if self._looks(t) == seen
            ]
            if raw.names:
                raw.earlier_steps = pending.steps[:-1]
                book.add(raw, pending.steps[-1])
        self._pending.clear()

    def _looks(self, t: torch.Tensor) -> tuple[Any, ...]:
        # In-place writes bump the version; `.data` writes do not, the tracker sees those.
        tr = self.tracker
        return (t._version, id(tr.param_writes.get(t)), id(tr.data_written.get(t)))


def _found(ctx: Context) -> list[tuple[tuple[int, str], Raw, list[tuple[str, torch.Tensor]]]]:
    """(owner id, attribute), its finding, and its tensors — for each unregistered attribute."""
    names = ctx.names
    out: dict[tuple[int, str], tuple[Raw, list[tuple[str, torch.Tensor]]]] = {}
    for key, u in names.unregistered.items():  # tensors that require grad, in this graph
        if key not in ctx.walk.leaves:
            continue
        group = (id(u.owner), u.attr)
        if group not in out:
            out[group] = (_raw(names, u.owner, u.attr), [])
        out[group][1].append((u.name, u.tensor))
    for module, attr, name, t in _plain_tensor_state(names, ctx.ran_modules):
        group = (id(module), attr)
        if group not in out:
            out[group] = (_raw(names, module, attr), [])
        out[group][1].append((name, t))
    return [(k, raw, tensors) for k, (raw, tensors) in out.items()]


def _raw(names: Names, owner: nn.Module, attr: str) -> Raw:
    value = getattr(owner, attr, None)
    what = (
        "a plain tensor attribute"
        if isinstance(value, torch.Tensor)
        else f"a plain {type(value).__name__}"
    )
    owner_name = names.module_name(owner) or type(owner).__name__
    hint = (
        "Wrap it in nn.Parameter(...) if it should learn, or register it with "
        "self.register_buffer(...) if it is a constant."
        if isinstance(value, torch.Tensor)
        else None
    )
    return Raw(
        "unregistered_parameter",
        attribute_site(owner, attr, "__init__"),
        [],
        consequences(f"{owner_name}.{attr}", what),
        grad_state="present",  # or never asked for: not a lost gradient
        hint=hint,
    )


def plain_state(names: Names) -> list[tuple[str, torch.Tensor]]:
    """Every plain floating-point tensor attribute of a user-written module, by reported name
    (names a config may use: ``expect: [model.codebook]``)."""
    return [(name, t) for _, _, name, t in _state_attributes(names)]


def _state_attributes(
    names: Names, ran: set[int] | None = None
) -> Iterator[tuple[nn.Module, str, str, torch.Tensor]]:
    for root in names.roots:
        for path, module in root.named_modules():
            if (ran is not None and id(module) not in ran) or not _user_class(type(module)):
                continue
            prefix = names.module_name(module) or path
            for attr, value in vars(module).items():
                if attr.startswith("_") or attr == "training":
                    continue
                for suffix, t in _tensors_of(value):
                    yield module, attr, f"{prefix}.{attr}{suffix}", t


def _plain_tensor_state(
    names: Names, ran: set[int]
) -> list[tuple[nn.Module, str, str, torch.Tensor]]:
    """Floating-point leaf tensors that do not require grad, kept as plain attributes (or in a
    plain list/dict) of a user-written module that ran, assigned in ``__init__`` and read in
    another method. Buffers, parameters, integer and bool tensors are not state of this kind;
    tensors that require grad are :attr:`Names.unregistered`."""
    return [
        (module, attr, name, t)
        for module, attr, name, t in _state_attributes(names, ran)
        if not t.requires_grad
        and attr in _read_attributes(type(module))
        # set in forward (a cache of the last output) is not state
        and attribute_site(module, attr, "__init__") is not None
    ]


def _tensors_of(value: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(value, (list, tuple)):
        items = [(f"[{i}]", v) for i, v in enumerate(value[:256])]
    elif isinstance(value, dict):
        items = [(f"[{k!r}]", v) for k, v in list(value.items())[:256]]
    else:
        items = [("", value)]
    return [
        (suffix, t)
        for suffix, t in items
        if isinstance(t, torch.Tensor)
        and not isinstance(t, nn.Parameter)
        and (t.is_floating_point() or t.is_complex())
        and t.grad_fn is None
    ]


def _user_class(cls: type) -> bool:
    code = getattr(getattr(cls, "__init__", None), "__code__", None)
    return code is not None and is_user_file(code.co_filename)


@functools.lru_cache(maxsize=256)
def _read_attributes(cls: type) -> frozenset[str]:
    """``self.X`` read in any method of ``cls`` (or its user-written bases) but ``__init__``."""
    found: set[str] = set()
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or not _user_class(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name == "__init__":
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Load)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    found.add(node.attr)
    return frozenset(found)
