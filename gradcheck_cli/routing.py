"""Conditional computation across checked backward calls: routed experts, layer drop, early exit.

A module that got no gradient in one backward call is only a bug if it never trains. A sparse
mixture-of-experts skips the experts no token was routed to, LayerDrop skips layers, an early-exit
network skips its deep blocks: each call alone looks like an unused module. So the
``unused_parameter`` findings of the check window are held here, with how often each tensor was
expected and how often it got a gradient, and decided when the window ends (:meth:`Routing.finish`):

* a tensor that got a gradient in some checked call is *conditional*: one info line with its run
  counts (per container, when it is a member of an ``nn.ModuleList``/``ModuleDict``/``Sequential``);
* a member of a container that never got one, while another member of that container did in the
  same call, is *never routed* (expert collapse, a dead branch): a warning naming the members, the
  container and the number of checked calls (an error when ``expect`` lists it);
* anything else is reported as the diagnosis said, at the calls it said (an unused layer the user
  wrote stays an error).

All-zero gradients are not held: a branch that stochastic depth multiplied by zero, or an expert
run on an empty batch, is still reported by the zero check at that call (not done yet).

Which container a skipped tensor belongs to is decided from what the run shows — the innermost
container on its path of which another member got a gradient in the same call — not from names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gradcheck_cli.findings import FindingBook, Raw, group_key
from gradcheck_cli.naming import Names, attribute_site
from gradcheck_cli.rules import KINDS
from gradcheck_cli.sites import Site, quick_site

_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.Sequential)
_SHORT_WINDOW = 3  # fewer checked calls than this cannot tell a rare member from a dead one


@dataclass
class _Group:
    """A container whose members were skipped in some checked calls."""

    name: str  # model.moe.experts
    cls: str  # ModuleList
    built: Site | None  # the user's line that built it (None: a library built it)
    members: list[int] = field(default_factory=list)  # id() of its members, until one is called
    called: Site | None = None  # where user code called one of its members


@dataclass
class _Held:
    """The held findings of one group key, by the call they were found at."""

    raw: Raw
    calls: dict[int, list[str]] = field(default_factory=dict)  # call index -> names
    earlier: list[int] = field(default_factory=list)  # lost there too, explained only later


class Routing:
    def __init__(self, book: FindingBook) -> None:
        self.book = book
        self.expected: dict[str, int] = {}  # name -> checked calls that expected it
        self.reached: dict[str, int] = {}  # name -> checked calls whose loss reached it
        self._held: dict[tuple[Any, ...], _Held] = {}
        self._member_of: dict[str, tuple[_Group, str]] = {}  # name -> (group, member key)
        self._groups: dict[str, _Group] = {}
        self._expect: set[str] = set()  # held names the config's `expect` lists
        self._watch: dict[int, _Group] = {}  # id(member module) -> its group, call site unknown

    # -- during the window -----------------------------------------------------------------------

    def observe(
        self,
        findings: list[Raw],
        states: list[tuple[str, str]],
        names: Names,
        expect_ids: set[int],
        index: int,
    ) -> list[Raw]:
        """Count backward call ``index`` (each expected tensor's ``ok`` / ``none`` / ``zero``
        state) and hold its unused_parameter findings; the rest is returned to be recorded now."""
        for name, state in states:
            if state in ("ok", "none", "zero"):
                self.expected[name] = self.expected.get(name, 0) + 1
                if state == "ok":  # a non-zero gradient
                    self.reached[name] = self.reached.get(name, 0) + 1
        now: list[Raw] = []
        held: list[Raw] = []
        for raw in findings:
            unused = raw.kind == "unused_parameter" and raw.grad_state == "none"
            (held if unused and raw.severity != "info" else now).append(raw)
        if not held:
            return now
        reached_children = _reached_children(n for n, s in states if s == "ok")
        by_name = {qual: key for key, qual in names.param_name.items()}
        for raw in held:
            self.hold(raw, index)
            for name in raw.names:
                param = by_name.get(name)
                if param is not None and param in expect_ids:
                    self._expect.add(name)
                if name not in self._member_of and param is not None:
                    self._place(name, names, names.params[param], reached_children)
        return now

    def hold(self, raw: Raw, index: int) -> None:
        """Hold ``raw``, found at backward call ``index``, until the window ends."""
        key = group_key(raw.kind, _site_of(raw), raw.severity, raw.message)
        entry = self._held.setdefault(key, _Held(dataclasses.replace(raw, names=[])))
        entry.calls.setdefault(index, []).extend(raw.names)
        entry.earlier += [i for i in raw.earlier_steps if i not in entry.earlier]

    def release(self, names: list[str], calls: set[int]) -> list[int]:
        """Give up what was held about ``names`` at the backward calls ``calls`` (checked while
        the op tracker slept: a later check, awake, explained them); the calls it was held at."""
        released: list[int] = []
        wanted = set(names)
        for key, entry in list(self._held.items()):
            for index in [i for i in entry.calls if i in calls]:
                kept = [n for n in entry.calls[index] if n not in wanted]
                if len(kept) < len(entry.calls[index]):
                    released.append(index)
                    if kept:
                        entry.calls[index] = kept
                    else:
                        del entry.calls[index]
            if not entry.calls:
                del self._held[key]
        return released

    def _place(
        self, name: str, names: Names, t: torch.Tensor, reached_children: dict[str, set[str]]
    ) -> None:
        """Make ``name`` a member of the innermost container on its path of which another member
        got a gradient in this call (none: it is not a routed member)."""
        root = names.param_root.get(id(t))
        if root is None:
            return
        parts = name[len(root.name) + 1 :].split(".")[:-1]
        chain: list[nn.Module] = [root.module]
        for part in parts:
            chain.append(chain[-1]._modules[part])  # type: ignore[arg-type]
        for depth in range(len(parts) - 1, -1, -1):
            container = chain[depth]
            if not isinstance(container, _CONTAINERS):
                continue
            cname = ".".join([root.name, *parts[:depth]])
            if not reached_children.get(cname, set()) - {parts[depth]}:
                continue
            group = self._groups.get(cname)
            if group is None:
                built = attribute_site(chain[depth - 1], parts[depth - 1]) if depth else None
                group = self._groups[cname] = _Group(cname, type(container).__name__, built)
                if built is not None:  # where its members run: a line of the user's code
                    group.members = [id(m) for m in container.children()]
                    self._watch.update(dict.fromkeys(group.members, group))
            self._member_of[name] = (group, parts[depth])
            return

    @property
    def watching(self) -> bool:
        return bool(self._watch)

    def module_ran(self, module: nn.Module) -> None:
        """A module ran (forward pre-hook): the first call of a watched group's member is where
        that group's members run."""
        group = self._watch.get(id(module))
        if group is None:
            return
        group.called = quick_site()
        for member in group.members:
            self._watch.pop(member, None)

    # -- when the window ends --------------------------------------------------------------------

    def finish(self) -> None:
        """Decide every held finding (see the module docstring) and record it in the book."""
        routed: dict[str, dict[str, list[int]]] = {}  # container -> member -> skipped at
        dead: dict[str, dict[str, list[int]]] = {}
        conditional: dict[str, dict[str, list[int]]] = {}  # module -> tensor -> skipped at
        where: dict[str, Any] = {}  # module -> its held finding's site
        for held in self._held.values():
            earlier = held.earlier
            for index, found in sorted(held.calls.items()):
                kept = []
                for name in found:
                    member = self._member_of.get(name)
                    if member is not None:
                        into = routed if self.reached.get(name) else dead
                        into.setdefault(member[0].name, {}).setdefault(name, []).append(index)
                    elif self.reached.get(name):
                        module = name.rsplit(".", 1)[0]
                        where.setdefault(module, held.raw.where)
                        conditional.setdefault(module, {}).setdefault(name, []).append(index)
                    else:
                        kept.append(name)
                if kept:
                    raw = dataclasses.replace(held.raw, names=kept, earlier_steps=earlier)
                    self.book.add(raw, index)
                    earlier = []
        for cname, members in routed.items():
            self._add_routed(self._groups[cname], members)
        for cname, members in dead.items():
            self._add_dead(self._groups[cname], members)
        self._add_conditional(conditional, where)
        self._held.clear()
        self._watch.clear()

    def _where(self, group: _Group, fallback: Any) -> tuple[Any, list[Site]]:
        if group.called is not None:
            return group.called, [group.built] if group.built is not None else []
        return (group.built or fallback), []

    def _members(self, group: _Group, members: dict[str, list[int]]) -> dict[str, list[str]]:
        """Member key -> its tensor names, in the container's order."""
        by_member: dict[str, list[str]] = {}
        for name in members:
            by_member.setdefault(self._member_of[name][1], []).append(name)
        return dict(sorted(by_member.items(), key=lambda kv: _natural(kv[0])))

    def _add_routed(self, group: _Group, members: dict[str, list[int]]) -> None:
        counts = []
        for key, tensors in self._members(group, members).items():
            ran = max(self.reached.get(n, 0) for n in tensors)
            calls = max(self.expected.get(n, 0) for n in tensors)
            counts.append(f"`{key}` ran in {ran} of {calls}")
        text = KINDS["unused_parameter"].message(
            "routed", container=group.name, cls=group.cls, counts=", ".join(counts)
        )
        where, related = self._where(group, None)
        raw = Raw("unused_parameter", where, list(members), text, severity="info", related=related)
        self._add(raw, members)

    def _add_dead(self, group: _Group, members: dict[str, list[int]]) -> None:
        rule = KINDS["unused_parameter"]
        by_member = self._members(group, members)
        calls = max(self.expected.get(n, 0) for n in members)
        listed = ", ".join(f"`{group.name}.{key}`" for key in by_member)
        text = rule.message(
            "never_routed",
            members=listed,
            calls=calls,
            container=group.name,
            cls=group.cls,
            them="it" if len(by_member) == 1 else "them",
        )
        if calls < _SHORT_WINDOW:
            text += rule.message("window_short", calls=calls, s="" if calls == 1 else "s")
        severity = "error" if any(n in self._expect for n in members) else "warning"
        where, related = self._where(group, None)
        hint = rule.message("never_routed_hint", container=group.name)
        raw = Raw(
            "unused_parameter", where, list(members), text, severity=severity, hint=hint,
            related=related,
        )  # fmt: skip
        self._add(raw, members)

    def _add_conditional(
        self, modules: dict[str, dict[str, list[int]]], where: dict[str, Any]
    ) -> None:
        """One info line per set of modules skipped at the same calls (an early exit's blocks)."""
        alike: dict[tuple[Any, ...], list[str]] = {}
        for module, tensors in modules.items():
            skipped = tuple(sorted({i for calls in tensors.values() for i in calls}))
            ran = max(self.reached.get(n, 0) for n in tensors)
            calls = max(self.expected.get(n, 0) for n in tensors)
            alike.setdefault((skipped, ran, calls), []).append(module)
        for (_, ran, calls), names in alike.items():
            text = KINDS["unused_parameter"].message(
                "conditional",
                modules=", ".join(f"`{n}`" for n in names),
                were="was" if len(names) == 1 else "were",
                ran=ran,
                calls=calls,
            )
            members = {t: c for n in names for t, c in modules[n].items()}
            raw = Raw("unused_parameter", where[names[0]], list(members), text, severity="info")
            self._add(raw, members)

    def _add(self, raw: Raw, members: dict[str, list[int]]) -> None:
        steps = sorted({i for calls in members.values() for i in calls})
        raw.earlier_steps = steps[:-1]
        self.book.add(raw, steps[-1] if steps else -1)


def _site_of(raw: Raw) -> Any:
    where = raw.where
    return getattr(where, "site", where)


def _reached_children(reached: Any) -> dict[str, set[str]]:
    """Dotted module path -> the keys of its children on the path of a reached tensor."""
    children: dict[str, set[str]] = {}
    for name in reached:
        parts = name.split(".")
        for depth in range(1, len(parts) - 1):
            children.setdefault(".".join(parts[:depth]), set()).add(parts[depth])
    return children


def _natural(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)
