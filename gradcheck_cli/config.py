"""The effective configuration of a run: what is checked, what is expected, what fails the run.

A config comes from the first of: an explicit path, ``$GRADCHECK_CONFIG``, ``./gradcheck.yaml``,
``./.gradcheck.yaml``, the ``[tool.gradcheck]`` table of ``./pyproject.toml``; else the defaults.
Command-line values then win over the file (:func:`apply_overrides`).

Files are read by ``config_files.py`` (YAML with ``yaml.safe_load`` semantics only). Every problem
raises :class:`ConfigError` with one line that starts with where it is:
``gradcheck.yaml:4:1: unknown key 'expct' (did you mean 'expect'?)``, or
``pyproject.toml [tool.gradcheck]:7: ...`` (TOML positions are found by scanning, lines only).

A key set to null (``expect:`` with nothing after it) takes its default. A single string is accepted
where a list of strings is expected. Each key's values are checked by its declaration on
:class:`Config` (``options.py``), the same declaration that generates :func:`config_schema`.

Names in ``expect``/``allow_none``/``allow_zero``/``frozen`` are matched by :func:`match_names`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gradcheck_cli.config_files import (
    ConfigError,
    Entry,
    is_toml,
    location,
    pyproject_entries,
    read_text,
    yaml_entries,
)
from gradcheck_cli.name_globs import match_names
from gradcheck_cli.options import (
    Choice,
    Count,
    Ignorable,
    Invalid,
    Names,
    Text,
    Tolerance,
    did_you_mean,
    names,
    option,
    options,
)
from gradcheck_cli.options import schema as options_schema
from gradcheck_cli.rules import RULES
from gradcheck_cli.toml_positions import Position

CONFIG_ENV = "GRADCHECK_CONFIG"
CONFIG_FILES = ("gradcheck.yaml", ".gradcheck.yaml")
PYPROJECT = "pyproject.toml"
FAIL_ON = ("error", "warning", "never")


DEFAULT_STEPS = 10  # backward calls checked by default (`steps`)


# Every config key is one field below, declared once (gradcheck_cli/options.py): its kind (which
# values it takes, and its JSON Schema), default, title and description (the schema), --help line
# (`gradcheck run`) and comment (`gradcheck init`). Adding a key: one `option(...)` field, then its
# use (ARCHITECTURE.md). The order is the order of the schema, the JSON report and `init`.
@dataclass
class Config:
    expect: list[str] = names(
        "Expected to get a gradient",
        "must receive a non-zero gradient",
        " An entry that matches no parameter is an error. `*` may span dots (`model.encoder.*`);"
        " `[0]` is matched literally (`model.blocks[0].weight`).",
    )
    allow_none: list[str] = names(
        "Allowed to get no gradient", "may get no gradient (grad is None)"
    )
    allow_zero: list[str] = names("Allowed an all-zero gradient", "may get an all-zero gradient")
    frozen: list[str] = names("Frozen on purpose", "must stay frozen (requires_grad=False)")
    # The check window: structural bugs (a detach, no_grad, a frozen or unused layer, an optimizer
    # that misses parameters) show in the first backward calls; after the window the
    # instrumentation is switched off so training runs at full speed.
    steps: int | str = option(
        Count("all"),
        DEFAULT_STEPS,
        title="Backward calls to check",
        doc="Check the first N backward() calls (default 10; afterwards the instrumentation is "
        "switched off), or every one with 'all'.",
        help="Which backward calls to check: N (the first N) or 'all'.",
        template="backward calls to check: the first N, or all",
    )
    stop_after: int | None = option(
        Count(),
        None,
        title="Stop the script after N steps",
        doc="Stop the training script after N backward() calls (null: let it run to the end).",
        help="End the script after N checked backward calls.",
        template="end the script after N checked backward calls (fast CI)",
        example=1,
    )
    zero_atol: float = option(
        Tolerance(),
        0.0,
        title="Zero tolerance",
        doc="A gradient whose norm is at most this is treated as all zero.",
        help="A gradient with max |g| <= this counts as zero.",
        template="max |g| that still counts as zero",
    )
    fail_on: str = option(
        Choice(*FAIL_ON),
        "error",
        title="Findings that fail the run",
        doc="Exit 1 on findings of this severity or worse: 'error' (errors only), 'warning' "
        "(warnings and errors), 'never' (always exit 0 for findings).",
        help="error (default), warning or never.",
        template="error | warning | never",
    )
    ignore: list[str] = option(
        Ignorable(),
        [],
        title="Ignored findings",
        doc="Finding kinds (e.g. unused_parameter) or rule ids (e.g. GC120) that are not reported.",
        help="Finding kind or rule id to ignore (repeatable).",
        template="finding kinds or rule ids, e.g. unused_parameter or GC120",
    )
    script: str | None = option(
        Text("a path (or module name)"),
        None,
        title="The script this config was written for",
        doc="Path relative to this file (or a module name for -m), written by `gradcheck init`. "
        "When this config is discovered (not named with --config or $GRADCHECK_CONFIG) and "
        "another script runs, names that match no parameter are warnings instead of errors.",
        help=None,
        template="the script this config is for",
        example="train.py",
    )
    # Where the values came from (not config keys: no `option`).
    source: str | None = field(default=None, compare=False)
    # "steps" -> where its value is; "expect[2]" -> where that entry is; (line, column), 1-based
    positions: dict[str, Position] = field(default_factory=dict, compare=False, repr=False)
    from_cli: frozenset[str] = field(default=frozenset(), compare=False, repr=False)  # keys
    discovered: bool = field(default=False, compare=False)  # found in the cwd, not named
    # Discovered, and written for another script: names matching nothing are warnings (README).
    lenient_names: bool = field(default=False, compare=False)

    def in_check_window(self, call: int) -> bool:
        """Is backward call number ``call`` (0-based) among those the config checks?"""
        return self.steps == "all" or call < int(self.steps)

    def ignores(self, kind: str) -> bool:
        """Whether findings of ``kind`` are ignored (by their kind or by their rule id)."""
        rule = RULES.get(kind)
        return kind in self.ignore or (rule is not None and rule.id in self.ignore)

    def where(self, key: str) -> str:
        """Where ``key`` (``"expect[2]"`` or ``"steps"``) was set, to start a message with.

        ``gradcheck.yaml:3:5``, ``pyproject.toml [tool.gradcheck]:7``, ``--expect`` for a
        command-line value, the file alone when the position is unknown, "" for no file.
        """
        base = key.partition("[")[0]
        if base in self.from_cli:
            return OPTIONS[base].flag
        position = self.positions.get(key)
        if position is None and key.endswith("]"):
            position = self.positions.get(base)
        return location(self.source, position)

    def to_dict(self) -> dict[str, Any]:
        return {key: _copy(getattr(self, key)) for key in KEYS}


OPTIONS = options(Config)  # key -> Option, in declaration order
KEYS = tuple(OPTIONS)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


# -- loading -------------------------------------------------------------------------------------


def load_config(
    path: str | None = None,
    *,
    cwd: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The config from ``path``, else ``$GRADCHECK_CONFIG``, else discovered in ``cwd``.

    Relative paths are taken from ``cwd`` (the process's working directory when None).
    """
    env = os.environ if environ is None else environ

    def resolve(name: str) -> str:
        return name if cwd is None or os.path.isabs(name) else os.path.join(cwd, name)

    if path is not None:
        return _load_file(resolve(path), f"config file not found: {path}")
    from_env = env.get(CONFIG_ENV)
    if from_env:
        return _load_file(
            resolve(from_env), f"config file not found: {from_env} (from ${CONFIG_ENV})"
        )
    for name in CONFIG_FILES:
        candidate = resolve(name)
        if os.path.isfile(candidate):
            return replace(_load_file(candidate, ""), discovered=True)
    candidate = resolve(PYPROJECT)
    if os.path.isfile(candidate):
        entries = pyproject_entries(read_text(candidate), candidate, required=False)
        if entries is not None:
            return replace(_build(entries, candidate), discovered=True)
    return Config()


def for_script(config: Config, target: str, as_module: bool) -> Config:
    """``config`` for running ``target``: a *discovered* config whose ``script:`` names another
    script only warns about names that match nothing (a named config always fails on them)."""
    if not config.discovered or not config.script or config.source is None:
        return config
    if as_module:
        same = config.script == target
    else:
        base = os.path.dirname(os.path.abspath(config.source))
        mine = os.path.realpath(os.path.join(base, config.script))
        same = mine == os.path.realpath(target)
    return config if same else replace(config, lenient_names=True)


def _load_file(path: str, missing: str) -> Config:
    if not os.path.exists(path):
        raise ConfigError(missing)
    if os.path.isdir(path):
        raise ConfigError(f"config file is a directory: {path}")
    text = read_text(path)
    if is_toml(path):
        entries = pyproject_entries(text, path, required=True)
        assert entries is not None
    else:
        entries = yaml_entries(text, path)
    return _build(entries, path)


def _build(entries: list[Entry], source: str) -> Config:
    values: dict[str, Any] = {}
    positions: dict[str, Position] = {}
    for entry in entries:
        key = entry.key
        if key not in KEYS:
            shown = repr(key) if isinstance(key, str) else str(key)
            hint = did_you_mean(str(key), KEYS) or f"known keys: {', '.join(KEYS)}"
            raise ConfigError(f"unknown key {shown} ({hint})", location(source, entry.key_at))
        if entry.value_at is not None:
            positions[key] = entry.value_at
        listed = isinstance(OPTIONS[key].kind, Names) and isinstance(entry.value, (str, list))
        for index, at in enumerate(entry.items_at if listed else []):
            if at is not None:
                positions[f"{key}[{index}]"] = at
        try:
            values[key] = OPTIONS[key].coerce(entry.value)
        except Invalid as e:
            at = entry.value_at
            if e.index is not None and e.index < len(entry.items_at):
                at = entry.items_at[e.index] or at
            raise ConfigError(e.detail, location(source, at)) from None
    return Config(**values, source=source, positions=positions)


# -- command line --------------------------------------------------------------------------------


def apply_overrides(config: Config, **cli_values: Any) -> Config:
    """A copy of ``config`` where every CLI value that is not None replaces the file's value.

    Values are validated as the file's are; a list replaces the file's list (it does not extend it).
    """
    changes: dict[str, Any] = {}
    positions = dict(config.positions)
    for key, value in cli_values.items():
        if key not in KEYS:
            hint = did_you_mean(key, KEYS) or f"known keys: {', '.join(KEYS)}"
            raise TypeError(f"unknown config key {key!r} ({hint})")
        if value is None:
            continue
        try:
            changes[key] = OPTIONS[key].coerce(value)
        except Invalid as e:
            raise ConfigError(e.detail, OPTIONS[key].flag) from None
        for name in [k for k in positions if k == key or k.startswith(key + "[")]:
            del positions[name]  # the value no longer comes from the file
    from_cli = config.from_cli | frozenset(changes)
    return replace(config, **changes, positions=positions, from_cli=from_cli)


# -- names ---------------------------------------------------------------------------------------


def unmatched_error(
    config: Config, key: str, pattern: str, index: int, names: Sequence[str]
) -> ConfigError:
    """The error for entry ``index`` of list ``key`` (``pattern``) matching none of ``names``."""
    detail = f"{key} entry {pattern!r} matches no parameter"
    closest = _closest(pattern, names)
    if closest:
        detail += "; closest: " + ", ".join(closest)
    elif not names:
        detail += " (no parameters were found)"
    return ConfigError(detail, config.where(f"{key}[{index}]"))


def _closest(pattern: str, names: Sequence[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    word = re.sub(r"[*?]", "", pattern)
    if not word:
        return []
    is_glob = word != pattern
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)

    def score(name: str) -> float:
        # A glob's literal part is also compared with the name's start and end
        # (`model.encdr.*` is closest to `model.encoder.0.weight`, not to a short name).
        candidates = [name, name[: len(word)], name[-len(word) :]] if is_glob else [name]
        best = 0.0
        for candidate in candidates:
            matcher.set_seq1(candidate)
            best = max(best, matcher.ratio())
        return best

    scored = [(score(name), name) for name in dict.fromkeys(names)]
    best = max((s for s, _ in scored), default=0.0)
    # Only the names about as close as the best one: a clearly worse match is noise.
    floor = max(cutoff, best - 0.05)
    ranked = sorted((s for s in scored if s[0] >= floor), key=lambda s: s[0], reverse=True)
    return [name for _, name in ranked[:n]]  # ties keep the names' order


# -- schema --------------------------------------------------------------------------------------


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, for editors and validators.

    Generated from the ``Config`` fields (and the kinds registry for ``ignore``) each time: it is
    never stale, and adding a key or a kind needs no second edit.
    """
    head = {
        "$id": "https://gradcheck.invalid/schemas/config-1.json",
        "title": "gradcheck configuration",
        "description": "Settings for `gradcheck run`, read from gradcheck.yaml, .gradcheck.yaml, "
        "$GRADCHECK_CONFIG or the [tool.gradcheck] table of pyproject.toml. Command-line options "
        "win over these. A key set to null takes its default.",
    }
    return options_schema(OPTIONS, head)


__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILES",
    "FAIL_ON",
    "KEYS",
    "OPTIONS",
    "Config",
    "ConfigError",
    "apply_overrides",
    "config_schema",
    "for_script",
    "load_config",
    "match_names",
    "unmatched_error",
]
