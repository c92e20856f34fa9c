"""Gradients lost inside code compiled by ``torch.compile``.

Compiled code runs without gradcheck's hooks (they step aside while Dynamo traces, so the user's
graph is the one it would be without gradcheck): a ``with torch.no_grad():`` inside a compiled
``forward`` leaves no event behind, and all the backward shows is AOT autograd's
``CompiledFunctionBackward`` sending no gradient to the parameters. The cause is then looked for in
the source: a grad-off ``with`` block (or decorator) in a user-written ``forward`` along the
parameter's module path that uses the next module (or the parameter) on that path. When none is
found, the finding says plainly that compilation hid the line.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from dataclasses import dataclass

import torch
from torch import nn

from gradcheck_cli.naming import Names
from gradcheck_cli.rules import KINDS
from gradcheck_cli.sites import Site, is_user_file
from gradcheck_cli.zeros import Culprit

_COMPILED_NODE = "CompiledFunctionBackward"
_OFF_MANAGERS = {"no_grad": "no_grad", "inference_mode": "inference_mode"}
_NOTE = (
    " — inside code compiled by torch.compile, where gradcheck sees no operation: "
    "found in the source of the compiled forward"
)


def explain(culprit: Culprit | None, names: Names, param: torch.Tensor) -> Culprit | None:
    """Replace a culprit that is only "the compiled graph sent no gradient" by its cause."""
    if culprit is None or culprit.node_name != _COMPILED_NODE:
        return culprit
    found = _grad_off_site(names, param)
    if found is not None:
        kind, site = found
        return Culprit(
            kind,
            site,
            None,
            KINDS[kind].message(region=KINDS[kind].region) + _NOTE,
            node_name=_COMPILED_NODE,
        )
    return Culprit(
        "zero_grad_flow",
        None,
        None,
        "the gradient was lost inside code compiled by torch.compile (its backward sent none "
        "to this tensor): compilation hides the operations from gradcheck, so the line that cut "
        "it off is not known",
        hint="Run once with TORCH_COMPILE_DISABLE=1 (the same code, not compiled): gradcheck "
        "then names the line that cut these parameters off.",
        node_name=_COMPILED_NODE,
    )


def _grad_off_site(names: Names, param: torch.Tensor) -> tuple[str, Site] | None:
    qual = names.param_name.get(id(param))
    root = names.param_root.get(id(param))
    if qual is None or root is None:
        return None
    parts = qual[len(root.name) + 1 :].split(".")
    for i, attr in enumerate(parts):
        try:
            owner = root.module.get_submodule(".".join(parts[:i]))
        except AttributeError:
            return None
        for klass in type(owner).__mro__:
            if klass is nn.Module:
                break
            found = _grad_off_blocks(klass).site_for(attr)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class _Blocks:
    """The grad-off blocks of one ``forward``: (kind, first line, last line), and where each
    ``self.X`` is used in it."""

    filename: str = ""
    blocks: tuple[tuple[str, int, int], ...] = ()
    uses: tuple[tuple[str, int], ...] = ()  # (attribute, line)

    def site_for(self, attr: str) -> tuple[str, Site] | None:
        lines = [line for a, line in self.uses if a == attr]
        # A block that uses it, else one after its first use (its output flows into the block:
        # it is the only way a parameter of this forward can lose its gradient there).
        for kind, first, last in self.blocks:
            if any(first <= line <= last for line in lines):
                return kind, Site(self.filename, first, "forward")
        for kind, first, _ in self.blocks:
            if lines and min(lines) < first:
                return kind, Site(self.filename, first, "forward")
        return None


@functools.lru_cache(maxsize=256)
def _grad_off_blocks(klass: type) -> _Blocks:
    fn = inspect.unwrap(vars(klass).get("forward", None) or (lambda: None))
    code = getattr(fn, "__code__", None)
    if code is None or not is_user_file(code.co_filename):
        return _Blocks()
    try:
        lines, start = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return _Blocks()
    blocks: list[tuple[str, int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                kind = _grad_off(item.context_expr)
                if kind is not None:
                    end = node.end_lineno or node.lineno
                    blocks.append((kind, start + node.lineno - 1, start + end - 1))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                kind = _grad_off(deco)
                if kind is not None:
                    end = node.end_lineno or node.lineno
                    blocks.append((kind, start + deco.lineno - 1, start + end - 1))
    uses = tuple(
        (node.attr, start + node.lineno - 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )
    return _Blocks(code.co_filename, tuple(sorted(blocks, key=lambda b: b[1])), uses)


def _grad_off(expr: ast.expr) -> str | None:
    """``torch.no_grad()``, ``inference_mode()``, ``set_grad_enabled(False)``: their kind."""
    call = expr if isinstance(expr, ast.Call) else None
    func = call.func if call is not None else expr
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in _OFF_MANAGERS:
        return _OFF_MANAGERS[name]
    if (
        name == "set_grad_enabled"
        and call is not None
        and call.args
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value is False
    ):
        return "set_grad_enabled"
    return None
