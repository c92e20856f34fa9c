"""Names for what the user trains: ``model.encoder.0.weight``, ``w``, ``model.blocks[0].bias``.

Root modules are named by the variable that holds them — a local of the frame that called
``backward()`` (and the user frames above it), or a global of ``__main__`` — one attribute deep into
plain objects (``self.model``, ``trainer.net``). A module held by another named module is not a
root. Plain leaf tensors are named by their variable. Tensors a module keeps in a plain list, dict or
attribute instead of a ``Parameter``/``ModuleList`` are found here too (they are not registered).
"""

from __future__ import annotations

import ast
import inspect
import types
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli import fsdp
from gradcheck_cli.sites import Site, is_user_file
from gradcheck_cli.tracking import grad_fn_of


@dataclass
class Root:
    name: str
    module: nn.Module
    # What ``module.named_modules()`` / ``named_parameters()`` yield, from its cached structure
    # (empty: ask the module).
    modules: list[tuple[str, nn.Module]] = field(default_factory=list, compare=False, repr=False)
    params: list[tuple[str, torch.Tensor]] = field(default_factory=list, compare=False, repr=False)

    def named_modules(self) -> Iterable[tuple[str, nn.Module]]:
        return self.modules or self.module.named_modules()

    def named_parameters(self) -> Iterable[tuple[str, torch.Tensor]]:
        return self.params or self.module.named_parameters()


@dataclass
class Unregistered:
    """A tensor a module uses but does not register (plain list/dict/attribute)."""

    name: str
    tensor: torch.Tensor
    owner: nn.Module
    attr: str


@dataclass
class Names:
    """The naming of one backward: roots, every parameter's qualified name, plain leaves."""

    roots: list[Root] = field(default_factory=list)
    param_name: dict[int, str] = field(default_factory=dict)  # id(param) -> qualified name
    param_root: dict[int, Root] = field(default_factory=dict)
    params: dict[int, torch.Tensor] = field(default_factory=dict)
    module_path: dict[int, tuple[Root, str]] = field(
        default_factory=dict
    )  # id(module) -> (root, path)
    leaves: dict[int, tuple[str, torch.Tensor]] = field(default_factory=dict)  # named plain leaves
    unregistered: dict[int, Unregistered] = field(default_factory=dict)
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)  # found in scope
    # id of a stand-in the graph uses (FSDP2's unsharded parameter) -> the user's tensor
    alias: dict[int, torch.Tensor] = field(default_factory=dict)

    def user_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """The tensor the user holds for ``t`` (``t`` itself unless FSDP2 swapped it in)."""
        return self.alias.get(id(t), t)

    # Non-leaf tensors the user made from a leaf of their own (`W = leaf.to(device)`), by
    # variable: weak, so a named `loss` or `out` does not keep its graph alive.
    non_leaves: dict[int, tuple[str, weakref.ref[torch.Tensor]]] = field(default_factory=dict)

    def name_of(self, t: torch.Tensor) -> str | None:
        key = id(t)
        if key in self.param_name:
            return self.param_name[key]
        if key in self.leaves:
            return self.leaves[key][0]
        if key in self.unregistered:
            return self.unregistered[key].name
        entry = self.non_leaves.get(key)
        if entry is not None and entry[1]() is t:
            return entry[0]
        return None

    def tensor(self, key: int) -> torch.Tensor | None:
        return self.params.get(key)

    def module_name(self, module: nn.Module) -> str | None:
        entry = self.module_path.get(id(module))
        if entry is None:
            return None
        root, path = entry
        return f"{root.name}.{path}" if path else root.name


def _is_plain_object(value: Any) -> bool:
    return (
        hasattr(value, "__dict__")
        and not isinstance(
            value,
            (type, types.ModuleType, types.FunctionType, types.MethodType, torch.Tensor, nn.Module),
        )
        and type(value).__module__ not in ("builtins",)
    )


def _scope_items(
    namespaces: Iterable[dict[str, Any]], cache: ScopeCache | None = None
) -> Iterator[tuple[str, Any]]:
    """What a namespace holds that naming can use: modules, tensors and optimizers, one attribute
    deep into plain objects and one item deep into short lists and tuples."""
    for ns in namespaces:
        if cache is not None:
            yield from cache.items(ns)
        else:
            yield from _namespace_items(ns)


_NAMED = (nn.Module, torch.Tensor, torch.optim.Optimizer)


def _namespace_items(
    ns: dict[str, Any], expanded: list[tuple[str, Any, _Fingerprint]] | None = None
) -> Iterator[tuple[str, Any]]:
    """One namespace's items for :func:`_scope_items`; the plain objects and sequences looked
    into are added to ``expanded`` (with their fingerprints) when given."""
    for name, value in list(ns.items()):
        if name.startswith("__"):
            continue
        if isinstance(value, _NAMED):
            yield name, value
        if _is_plain_object(value):
            try:
                attrs = list(vars(value).items())
            except TypeError:
                continue
            if expanded is not None:
                expanded.append((name, value, _fingerprint(vars(value))))
            for attr, inner in attrs[:200]:
                if not attr.startswith("_") and isinstance(inner, _NAMED):
                    yield f"{name}.{attr}", inner
        elif type(value) in (list, tuple) and len(value) <= 64:
            if expanded is not None:
                expanded.append((name, value, _fingerprint(value)))
            for i, inner in enumerate(value):
                if isinstance(inner, (nn.Module, torch.Tensor)):
                    yield f"{name}[{i}]", inner


_Fingerprint = tuple[tuple[Any, ...], tuple[int, ...], tuple[type, ...]]


def _fingerprint(held: dict[str, Any] | list[Any] | tuple[Any, ...]) -> _Fingerprint:
    """Keys, identities and types of what a namespace (or a list) holds: while it holds them, the
    same identities are the same objects."""
    values = list(held.values()) if isinstance(held, dict) else list(held)
    keys = tuple(held) if isinstance(held, dict) else ()
    return keys, tuple(map(id, values)), tuple(map(type, values))


class ScopeCache:
    """:func:`_scope_items` of each namespace, reused from one checked call to the next while the
    namespace — and every plain object and list it was looked into — holds the same objects
    under the same names (a module's or script's globals between steps). Only names are kept,
    never the values: a cached ``loss`` must not keep its graph alive."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[_Fingerprint, list[tuple[str, ...]], list[Any]]] = {}

    def items(self, ns: dict[str, Any]) -> list[tuple[str, Any]]:
        fp = _fingerprint(ns)
        entry = self._entries.get(id(ns))
        if entry is not None and entry[0] == fp:
            _, plan, checks = entry
            if all(_fingerprint(_contents(ns, key)) == sub for key, sub in checks):
                return [_resolve(ns, step) for step in plan]
        expanded: list[tuple[str, Any, _Fingerprint]] = []
        found = list(_namespace_items(ns, expanded))
        plan = [_step_of(name) for name, _ in found]
        if len(self._entries) >= 64:
            self._entries.clear()
        self._entries[id(ns)] = (fp, plan, [(name, sub) for name, _, sub in expanded])
        return found


def _contents(ns: dict[str, Any], key: str) -> Any:
    """What a looked-into plain object or sequence holds."""
    value = ns[key]
    return value if type(value) in (list, tuple) else vars(value)


def _step_of(name: str) -> tuple[str, ...]:
    """How to find ``name`` (``x``, ``obj.attr``, ``seq[3]``) in the namespace again."""
    if name.endswith("]"):
        key, index = name[:-1].rsplit("[", 1)
        return ("item", key, index)
    if "." in name:
        key, attr = name.split(".", 1)
        return ("attr", key, attr)
    return ("top", name)


def _resolve(ns: dict[str, Any], step: tuple[str, ...]) -> tuple[str, Any]:
    if step[0] == "top":
        return step[1], ns[step[1]]
    if step[0] == "attr":
        return f"{step[1]}.{step[2]}", vars(ns[step[1]])[step[2]]
    return f"{step[1]}[{step[2]}]", ns[step[1]][int(step[2])]


def _display_name(name: str) -> str:
    return name[5:] if name.startswith("self.") else name


_WRAPPERS = ("DistributedDataParallel", "DataParallel", "OptimizedModule")


def _strip_wrappers(module: nn.Module) -> nn.Module:
    # DDP / DataParallel / torch.compile wrappers: name parameters as the user's own model.
    if type(module).__name__ not in _WRAPPERS:  # (a missing attribute of a module is slow)
        return module
    for attr in ("module", "_orig_mod"):
        inner = getattr(module, attr, None)
        if isinstance(inner, nn.Module):
            return _strip_wrappers(inner)
    return module


def build_names(
    namespaces: list[dict[str, Any]],
    extra_modules: Iterable[nn.Module] = (),
    keep_non_leaf: Callable[[torch.Tensor], bool] | None = None,
    structures: StructureCache | None = None,
    scopes: ScopeCache | None = None,
) -> Names:
    """Name everything reachable from ``namespaces`` (innermost scope first).

    Named tensors are leaves only: a kept ``loss`` would keep its graph alive. Non-leaves that
    ``keep_non_leaf`` accepts are named through weak references.
    """
    names = Names()
    candidates: list[Root] = []
    seen_modules: set[int] = set()
    for name, value in _scope_items(namespaces, scopes):
        if isinstance(value, nn.Module):
            value = _strip_wrappers(value)
            if id(value) not in seen_modules:
                seen_modules.add(id(value))
                candidates.append(Root(_display_name(name), value))
        elif (
            isinstance(value, torch.Tensor)
            and grad_fn_of(value) is None
            and id(value) not in names.leaves
        ):
            # Leaves only: keeping a non-leaf (`loss`, `out`) would keep its whole graph alive.
            names.leaves[id(value)] = (_display_name(name), value)
        elif (
            isinstance(value, torch.Tensor)
            and keep_non_leaf is not None
            and id(value) not in names.non_leaves
            and grad_fn_of(value) is not None
            and keep_non_leaf(value)
        ):
            names.non_leaves[id(value)] = (_display_name(name), weakref.ref(value))
        elif isinstance(value, torch.optim.Optimizer) and all(
            o is not value for o in names.optimizers
        ):
            names.optimizers.append(value)
    extra_ids: set[int] = set()
    for module in extra_modules:
        module = _strip_wrappers(module)
        extra_ids.add(id(module))
        if id(module) not in seen_modules:
            seen_modules.add(id(module))
            candidates.append(Root(type(module).__name__, module))

    # A candidate held inside another candidate is not a root; bigger models claim modules first.
    # A candidate inside another's tree is skipped below whatever the order, so its own tree
    # (every module that ran is a candidate) is never walked.
    shapes: dict[int, _Structure] = {}
    inside: set[int] = set()
    for r in candidates:
        if id(r.module) not in inside:
            shape = shapes[id(r.module)] = (
                structures.get(r.module) if structures is not None else _Structure(r.module)
            )
            inside.update(id(sub) for _, sub in shape.modules[1:])
    contained: set[int] = set()
    sized = sorted(
        (r for r in candidates if id(r.module) in shapes),
        key=lambda r: -len(shapes[id(r.module)].modules),
    )
    for candidate in sized:
        if id(candidate.module) in contained:
            continue
        shape = shapes[id(candidate.module)]
        named = shape.named(candidate.name)
        root = named.root
        names.roots.append(root)
        contained.update(named.module_path)
        contained.discard(id(root.module))
        if not names.module_path:  # the first root (usually the only one): copied whole
            names.module_path.update(named.module_path)
            names.param_name.update(named.param_name)
            names.param_root.update(dict.fromkeys(named.param_name, root))
            names.params.update(named.params)
        else:  # a module or parameter shared with an earlier root keeps that root's name
            for key, entry in named.module_path.items():
                names.module_path.setdefault(key, entry)
            for key, qual in named.param_name.items():
                if key not in names.param_name:
                    names.param_name[key] = qual
                    names.param_root[key] = root
                    names.params[key] = named.params[key]
        names.alias.update(shape.alias)
        for u in shape.unregistered(root.name):
            names.unregistered.setdefault(id(u.tensor), u)
    # A module that only ran (no variable holds it) and lives in a plain list of a named model is
    # one of that model's unregistered layers, not a model of its own.
    names.roots = [
        r
        for r in names.roots
        if not (
            id(r.module) in extra_ids
            and all(id(p) in names.unregistered for _, p in shapes[id(r.module)].params)
        )
    ]
    for key in [k for k, root in names.param_root.items() if root not in names.roots]:
        del names.param_name[key], names.param_root[key], names.params[key]
    order = {id(r.module): i for i, r in enumerate(candidates)}
    names.roots.sort(key=lambda r: order[id(r.module)])
    for key in list(names.leaves):
        if key in names.param_name or key in names.unregistered:
            del names.leaves[key]
    return names


class _Structure:
    """One pass over a module tree: what ``named_modules()`` and ``named_parameters()`` yield (same
    order, duplicates removed) and the tensors held outside parameters.

    Built once per module tree and reused across checked calls by :class:`StructureCache`; this
    is called for modules, parameters, sizes and unregistered tensors alike.
    """

    __slots__ = ("_candidates", "_held", "_named", "alias", "holders", "modules", "params")

    def __init__(self, module: nn.Module) -> None:
        self.modules: list[tuple[str, nn.Module]] = []
        self.params: list[tuple[str, torch.Tensor]] = []
        seen_modules: set[int] = set()
        seen_params: set[int] = set()
        stack: list[tuple[str, nn.Module]] = [("", module)]
        while stack:
            path, mod = stack.pop()
            if id(mod) in seen_modules:
                continue
            seen_modules.add(id(mod))
            self.modules.append((path, mod))
            prefix = f"{path}." if path else ""
            for name, p in mod._parameters.items():
                if p is not None and id(p) not in seen_params:
                    seen_params.add(id(p))
                    self.params.append((prefix + name, p))
            children = [(prefix + n, c) for n, c in mod._modules.items() if c is not None]
            stack.extend(reversed(children))
        # Under FSDP2 a module holds its unsharded stand-ins around forward and backward.
        self.alias = fsdp.aliases(mod for _, mod in self.modules)
        if self.alias:
            self.params = [(n, self.alias.get(id(p), p)) for n, p in self.params]
            seen_params |= {id(p) for p in self.alias.values()}
        self._held = seen_params
        # (module, attribute, value, size) of every attribute that may hold a tensor outside the
        # parameters: what StructureCache checks again before reusing this structure.
        self.holders: list[tuple[nn.Module, str, Any, int]] = []
        self._candidates = self._scan()
        self._named: dict[str, _Named] = {}

    def named(self, root_name: str) -> _Named:
        """The tree's modules and parameters named under ``root_name`` (kept per name)."""
        named = self._named.get(root_name)
        if named is None:
            root = Root(root_name, self.modules[0][1], self.modules, self.params)
            named = self._named[root_name] = _Named(
                root,
                {id(sub): (root, path) for path, sub in self.modules},
                {id(p): f"{root_name}.{pname}" for pname, p in self.params},
                {id(p): p for _, p in self.params},
            )
        return named

    def unregistered(self, root_name: str) -> list[Unregistered]:
        """Tensors that require grad, held by a module outside its parameters (plain list/attr)."""
        return [
            Unregistered(
                f"{root_name}.{path}.{tail}" if path else f"{root_name}.{tail}",
                t,
                module,
                attr,
            )
            for path, attr, tail, t, module in self._candidates
            if t.requires_grad
        ]

    def _scan(self) -> list[tuple[str, str, str, torch.Tensor, nn.Module]]:
        """(module path, attribute, name below the module, tensor, module) of each tensor a
        module holds outside the registered parameters, whether it requires grad or not."""
        found: list[tuple[str, str, str, torch.Tensor, nn.Module]] = []
        registered = self._held
        for path, module in self.modules:
            # Most attributes are torch's own (`_parameters`, hooks) or plain numbers: only
            # containers and tensors can hold a tensor.
            d = vars(module)
            extra = [a for a in d.keys() - _MODULE_INTERNALS if isinstance(d[a], _HOLDERS)]
            if not extra:
                continue
            order = list(d)
            extra.sort(key=order.index)
            for attr in extra:
                value = d[attr]
                self.holders.append(
                    (module, attr, value, len(value) if not isinstance(value, torch.Tensor) else 0)
                )
                if attr[:1] == "_":
                    continue
                items: list[tuple[str, Any]]
                if isinstance(value, (list, tuple)):
                    items = [(f"[{i}]", v) for i, v in enumerate(value)]
                elif isinstance(value, dict):
                    items = [(f"[{k!r}]", v) for k, v in value.items()]
                else:
                    items = [("", value)]
                for suffix, item in items[:256]:
                    if isinstance(item, nn.Module) and suffix:
                        for pname, p in item.named_parameters():
                            if id(p) not in registered:
                                found.append((path, attr, f"{attr}{suffix}.{pname}", p, module))
                    elif isinstance(item, torch.Tensor) and id(item) not in registered:
                        found.append((path, attr, f"{attr}{suffix}", item, module))
        return found


@dataclass
class _Named:
    root: Root
    module_path: dict[int, tuple[Root, str]]
    param_name: dict[int, str]
    params: dict[int, torch.Tensor]


# What a module attribute must be to hold a tensor outside the registered parameters.
_HOLDERS = (list, tuple, dict, torch.Tensor)
# The attributes every module has (torch's own bookkeeping, `training`): never user tensors.
_MODULE_INTERNALS = frozenset(vars(nn.Module()))


class StructureCache:
    """Module trees as :class:`_Structure`, reused from one checked call to the next.

    Rebuilding them is most of the cost of naming a small model at every check. A structure is
    reused while :data:`STRUCTURE_VERSION` is unchanged — the patches bump it whenever a module
    registers a submodule or parameter, has an attribute assigned or deleted, or is converted
    (``.to()``) — and while every attribute that held a tensor outside the parameters (a plain
    list, dict or tensor attribute) still holds the same object with the same length. Trees
    with FSDP2 stand-ins are never reused: those change around every forward.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[nn.Module], int, _Structure]] = {}

    def current(self, module: nn.Module) -> _Structure | None:
        """The cached structure of ``module`` while it is still valid, else None (nothing is
        built)."""
        entry = self._entries.get(id(module))
        if entry is not None:
            ref, version, shape = entry
            if ref() is module and version == STRUCTURE_VERSION[0] and _holders_unchanged(shape):
                return shape
        return None

    def get(self, module: nn.Module) -> _Structure:
        entry = self._entries.get(id(module))
        if entry is not None:
            ref, version, shape = entry
            if ref() is module and version == STRUCTURE_VERSION[0] and _holders_unchanged(shape):
                return shape
        shape = _Structure(module)
        if not shape.alias:
            if len(self._entries) >= 256:
                self._entries.clear()
            self._entries[id(module)] = (weakref.ref(module), STRUCTURE_VERSION[0], shape)
        return shape


# Bumped by the patches on every change to a module tree (see StructureCache).
STRUCTURE_VERSION = [0]


def structure_changed(*_: Any) -> None:
    """A module tree may have changed: no cached structure is reused. (Also a registration hook:
    it returns None, so torch registers the value unchanged.)"""
    STRUCTURE_VERSION[0] += 1


def _holders_unchanged(shape: _Structure) -> bool:
    for module, attr, value, size in shape.holders:
        now = vars(module).get(attr)
        if now is not value or (not isinstance(value, torch.Tensor) and len(value) != size):
            return False
    return True


def frame_namespaces(
    frame: types.FrameType | None, main_globals: dict[str, Any] | None, depth: int = 4
) -> list[dict[str, Any]]:
    """Locals of the user frames from ``frame`` outwards, then ``__main__``'s globals."""
    spaces: list[dict[str, Any]] = []
    n = 0
    while frame is not None and n < depth:
        if is_user_file(frame.f_code.co_filename):
            spaces.append(frame.f_locals)
            if frame.f_globals is not main_globals:
                spaces.append(frame.f_globals)
            n += 1
        frame = frame.f_back
    if main_globals is not None:
        spaces.append(main_globals)
    return spaces


# -- static source lookups ---------------------------------------------------------------------


def _class_function(cls: type, name: str) -> types.FunctionType | None:
    for klass in cls.__mro__:
        fn = vars(klass).get(name)
        if isinstance(fn, types.FunctionType) and is_user_file(fn.__code__.co_filename):
            return fn
    return None


def _function_ast(fn: types.FunctionType) -> tuple[ast.AST, int] | None:
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return None
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError:
        return None
    return tree, start


def attribute_site(
    owner: nn.Module, attr: str, method: str = "__init__", call: bool = False
) -> Site | None:
    """The line in ``type(owner).<method>`` that assigns (or, with ``call``, calls) ``self.<attr>``."""
    fn = _class_function(type(owner), method)
    if fn is None:
        return None
    parsed = _function_ast(fn)
    if parsed is None:
        return None
    tree, start = parsed
    for node in ast.walk(tree):
        target = None
        if call and isinstance(node, ast.Call):
            target = node.func
        elif not call and isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr == attr:
                    target = t
        if (
            isinstance(target, ast.Attribute)
            and target.attr == attr
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            line = start + node.lineno - 1
            return Site(fn.__code__.co_filename, line, fn.__code__.co_name)
    return None
