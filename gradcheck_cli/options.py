"""Config options declared once: each value kind checks a value *and* states its JSON Schema.

:class:`gradcheck_cli.config.Config` declares every key as a field made by :func:`option` (its type,
default, title, description, ``--help`` line and ``gradcheck init`` comment). From those fields come
the loader's validation (:meth:`ValueKind.coerce`), the JSON Schema (:func:`schema`), the ``run``
command's options (``cli.py``) and the tail of the ``init`` template (:func:`template_lines`).

A kind's check and its schema are written side by side so that they cannot drift apart; the
numeric kinds check strings with the very regular expression they publish (YAML 1.1 reads ``1e-6``
as a string, and a quoted ``'10'`` is accepted by both). ``tests/test_options.py`` runs every value
through both and requires the same verdict. The one exception is a YAML ``.nan``: JSON has no NaN,
so a JSON Schema cannot refuse it; the loader does.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

# A value beyond the largest float is infinite: `maximum` is how a JSON Schema refuses `.inf`.
_FLOAT_MAX = 1.7976931348623157e308


class Invalid(Exception):
    """A value a key cannot take; ``index`` is the list entry at fault, if one is."""

    def __init__(self, detail: str, index: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.index = index


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return repr(value)
    return type_name(value)


def did_you_mean(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


class ValueKind:
    """What a key holds. ``coerce`` returns the value to use or raises :class:`Invalid`."""

    metavar = "VALUE"
    repeatable = False  # on the command line: given once per entry

    @property
    def defs(self) -> dict[str, dict[str, Any]]:
        """The ``$defs`` entries its schema refers to."""
        return {}

    def coerce(self, key: str, value: Any) -> Any:
        raise NotImplementedError

    def schema(self) -> list[dict[str, Any]]:
        """The JSON Schema alternatives of a non-null value."""
        raise NotImplementedError


class Names(ValueKind):
    """A list of non-empty strings; one string stands for a list of one."""

    metavar = "GLOB"
    repeatable = True

    def __init__(self, plural: str = "names or globs", singular: str = "a name or glob") -> None:
        self.plural, self.singular = plural, singular

    item_ref = "#/$defs/name"

    @property
    def defs(self) -> dict[str, dict[str, Any]]:
        name = (
            "A parameter name (model.encoder.0.weight) or an fnmatch-style glob (model.encoder.*)."
        )
        return {"name": {"type": "string", "minLength": 1, "description": name}}

    def coerce(self, key: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        elif not isinstance(value, (list, tuple)):
            detail = f"{key!r} must be a list of strings ({self.plural}), not {type_name(value)}"
            raise Invalid(detail)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                detail = (
                    f"'{key}[{index}]' must be a string ({self.singular}), not {type_name(item)}"
                )
                raise Invalid(detail, index)
            if not item:
                raise Invalid(f"'{key}[{index}]' must not be empty", index)
            self.check_item(key, item, index)
        return list(value)

    def check_item(self, key: str, item: str, index: int) -> None:
        """Further checks of one entry (none for names)."""

    def schema(self) -> list[dict[str, Any]]:
        item = {"$ref": self.item_ref}
        return [item, {"type": "array", "items": item}]


class Ignorable(Names):
    """Finding kinds or rule ids, from the kinds registry (``rules.py``)."""

    metavar = "KIND"
    item_ref = "#/$defs/ignorable"

    def __init__(self) -> None:
        super().__init__("finding kinds or rule ids", "a finding kind or rule id")

    @property
    def defs(self) -> dict[str, dict[str, Any]]:
        from gradcheck_cli.rules import ignorable

        return {"ignorable": {"description": "A finding kind or a rule id.", "enum": ignorable()}}

    def check_item(self, key: str, item: str, index: int) -> None:
        from gradcheck_cli.rules import KINDS, ignorable

        known = ignorable()
        if item in known:
            return
        if item.upper() in {k.id for k in KINDS.values()}:
            hint: str | None = f"did you mean {item.upper()!r}?"
        else:
            hint = did_you_mean(item.replace("-", "_").lower(), known)
        hint = hint or f"kinds: {', '.join(KINDS)}"
        raise Invalid(
            f"{key!r} entry {item!r} is neither a finding kind nor a rule id ({hint})", index
        )


class Count(ValueKind):
    """A positive integer (``3``, ``3.0``, ``'3'``), or the word ``word`` when one is given."""

    PATTERN = "^[0-9]*[1-9][0-9]*$"  # digits, not all zero

    def __init__(self, word: str | None = None) -> None:
        self.word = word
        self.metavar = f"N|{word}" if word else "N"

    def coerce(self, key: str, value: Any) -> int | str:
        if self.word is not None and value == self.word:
            return self.word
        number = value
        if isinstance(value, str) and re.search(self.PATTERN, value):
            number = int(value)
        if isinstance(value, float) and value.is_integer():
            number = int(value)  # what a JSON Schema "integer" is: 10.0 is 10
        if isinstance(number, int) and not isinstance(number, bool) and number >= 1:
            return number
        also = f" or {self.word!r}" if self.word else ""
        raise Invalid(f"{key!r} must be a positive integer{also}, not {show(value)}")

    def schema(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"type": "integer", "minimum": 1},
            {"type": "string", "pattern": self.PATTERN},
        ]
        return [*out, {"const": self.word}] if self.word else out


class Tolerance(ValueKind):
    """A finite number >= 0 (``1e-6`` written as a string too)."""

    PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$"
    metavar = "X"

    def coerce(self, key: str, value: Any) -> float:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        written = isinstance(value, str) and re.search(self.PATTERN, value)
        number = float(value) if numeric or written else None
        if number is None or not math.isfinite(number) or number < 0:
            raise Invalid(f"{key!r} must be a number >= 0, not {show(value)}")
        return number

    def schema(self) -> list[dict[str, Any]]:
        return [
            {"type": "number", "minimum": 0, "maximum": _FLOAT_MAX},
            {"type": "string", "pattern": self.PATTERN},
        ]


class Choice(ValueKind):
    """One of a few words."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.metavar = "|".join(choices)

    def coerce(self, key: str, value: Any) -> str:
        if value in self.choices:
            return str(value)
        listed = ", ".join(repr(c) for c in self.choices)
        detail = f"{key!r} must be one of {listed}, not {show(value)}"
        hint = did_you_mean(value, self.choices) if isinstance(value, str) else None
        raise Invalid(detail + (f" ({hint})" if hint else ""))

    def schema(self) -> list[dict[str, Any]]:
        return [{"enum": list(self.choices)}]


class Text(ValueKind):
    """A non-empty string."""

    def __init__(self, what: str, metavar: str = "PATH") -> None:
        self.what, self.metavar = what, metavar

    def coerce(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise Invalid(f"{key!r} must be {self.what}, not {show(value)}")
        return value

    def schema(self) -> list[dict[str, Any]]:
        return [{"type": "string", "minLength": 1}]


@dataclass(frozen=True)
class Option:
    """One config key. ``key`` is the ``Config`` field's name (filled in by :func:`options`)."""

    kind: ValueKind
    default: Any
    title: str
    doc: str  # the schema's description
    help: str | None  # the `run --help` line; None: not a command-line option
    template: str  # the `init` template's comment
    example: Any = None  # what `init` shows (commented out) when the default is None
    key: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def coerce(self, value: Any) -> Any:
        """The value to use; None takes the default (a fresh copy of a list)."""
        if value is None:
            return list(self.default) if isinstance(self.default, list) else self.default
        return self.kind.coerce(self.key, value)


def option(kind: ValueKind, default: Any, **about: Any) -> Any:
    """A ``Config`` field declaring a config key (see :class:`Option` for ``about``)."""
    declared = Option(kind, default, **about)
    meta = {"option": declared}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def names(title: str, rule: str, more: str = "") -> Any:
    """A names-or-globs key: its schema description, ``--help`` line and ``init`` comment all say
    which parameters ``rule`` (``"must receive a non-zero gradient"``)."""
    return option(
        Names(),
        [],
        title=title,
        doc=f"Parameters (names or globs) that {rule}.{more}",
        help=f"Name or glob that {rule} (repeatable).",
        template=f"names or globs that {rule}",
    )


def options(config_class: type) -> dict[str, Option]:
    """The options a config dataclass declares, in declaration order, by key."""
    found: dict[str, Option] = {}
    for f in fields(config_class):
        declared = f.metadata.get("option")
        if declared is not None:
            found[f.name] = Option(**{**declared.__dict__, "key": f.name})
    return found


def schema(table: dict[str, Option], head: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file holding the keys of ``table``."""
    properties: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    for key, opt in table.items():
        properties[key] = {
            "title": opt.title,
            "description": opt.doc,
            "default": opt.default,
            "anyOf": [*opt.kind.schema(), {"type": "null"}],
        }
        defs.update(opt.kind.defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **head,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "$defs": defs,
    }


def template_lines(table: dict[str, Option], skip: Sequence[str], width: int = 24) -> list[str]:
    """``key: default   # comment`` for each option not in ``skip``; commented out when the default
    is None (showing ``example``). The ``init`` template ends with these."""
    lines = []
    for key, opt in table.items():
        if key in skip:
            continue
        value = opt.example if opt.default is None else opt.default
        text = f"{key}: {yaml_scalar(value)}"
        if opt.default is None:
            text = "# " + text
        lines.append(f"{text:<{width - 1}} # {opt.template}")
    return lines


def yaml_scalar(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
