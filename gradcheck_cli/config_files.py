"""Reading a config file into entries that know where they are (``file:line:col``).

YAML is read with ``yaml.safe_load`` semantics only (the SafeLoader's constructors; any other tag is
refused before anything is constructed); a ``[tool.gradcheck]`` table's positions are found by
scanning (``toml_positions.py``, lines only). What the values mean is ``config.py``'s business.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import yaml

from gradcheck_cli.errors import CommandError
from gradcheck_cli.options import type_name
from gradcheck_cli.toml_positions import Position, toml_positions

if sys.version_info >= (3, 11):
    import tomllib as _toml
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml
    except ModuleNotFoundError:
        _toml = None


class ConfigError(CommandError):
    """A config value gradcheck cannot use (exit 2); ``message`` is ``<location>: <detail>``."""

    __module__ = "gradcheck_cli.config"  # its public home: tracebacks name it as users import it

    def __init__(self, detail: str, location: str = "") -> None:
        super().__init__(f"{location}: {detail}" if location else detail)
        self.detail = detail
        self.location = location


@dataclass
class Entry:
    key: Any
    value: Any
    key_at: Position | None
    value_at: Position | None
    items_at: list[Position | None]  # where each list entry is (a lone string counts as one)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except UnicodeDecodeError:
        raise ConfigError("cannot read the config: it is not UTF-8 text", shown(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None


# -- YAML ----------------------------------------------------------------------------------------

_YAML_TAG = "tag:yaml.org,2002:"
_SAFE_TAGS = frozenset(t for t in yaml.SafeLoader.yaml_constructors if t is not None) | {
    _YAML_TAG + "merge"
}


def yaml_entries(text: str, source: str) -> list[Entry]:
    loader: yaml.SafeLoader | None = None
    try:
        try:
            loader = yaml.SafeLoader(text)  # the Reader already refuses control characters
            root = loader.get_single_node()
            if root is None:
                return []  # an empty file (or only comments)
            _check_tags(root, source)
            if not isinstance(root, yaml.MappingNode):
                kind = type_name(_construct(loader, root, source))
                raise ConfigError(
                    f"the config must be a mapping of keys to values, not {kind}",
                    location(source, _mark(root)),
                )
            first_at: dict[Any, Position] = {}
            for key_node, _ in root.value:
                if key_node.tag == _YAML_TAG + "merge":
                    continue
                key = _construct(loader, key_node, source)
                if _hashable(key) and key in first_at:
                    line = first_at[key][0]
                    raise ConfigError(
                        f"duplicate key {key!r} (first set on line {line})",
                        location(source, _mark(key_node)),
                    )
                if _hashable(key):
                    first_at[key] = _mark(key_node)
            loader.flatten_mapping(root)  # `<<: *defaults` merges, as safe_load does
            entries: dict[Any, Entry] = {}
            for key_node, value_node in root.value:
                key = _construct(loader, key_node, source)
                value = _construct(loader, value_node, source)
                if isinstance(value_node, yaml.SequenceNode):
                    items_at: list[Position | None] = [_mark(n) for n in value_node.value]
                else:
                    items_at = [_mark(value_node)]
                entry = Entry(key, value, _mark(key_node), _mark(value_node), items_at)
                entries[key if _hashable(key) else id(key_node)] = entry
            return list(entries.values())
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            at = (mark.line + 1, mark.column + 1) if mark is not None else None
            problem = e.problem or e.context or "unreadable"
            if e.context and problem.startswith("but "):  # "expected ..., but found ..."
                problem = f"{e.context}, {problem}"
            if problem.endswith("but got '['"):  # `expect: [model.blocks[0].weight]`
                problem += " (quote a name that holds brackets: 'model.blocks[0].weight')"
            raise ConfigError(f"invalid YAML: {problem}", location(source, at)) from None
        except yaml.reader.ReaderError as e:
            line = text.count("\n", 0, e.position) + 1
            column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
            detail = f"invalid YAML: unacceptable character #x{e.character:04x}: {e.reason}"
            raise ConfigError(detail, location(source, (line, column))) from None
        except yaml.YAMLError as e:
            raise ConfigError(f"invalid YAML: {' '.join(str(e).split())}", shown(source)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _construct(loader: yaml.SafeLoader, node: yaml.Node, source: str) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError) as e:  # e.g. `!!int abc`
        raise ConfigError(f"invalid YAML: {e}", location(source, _mark(node))) from None


def _check_tags(root: yaml.Node, source: str) -> None:
    """Refuse tags the SafeLoader does not know (``!!python/object:...``) before constructing."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.tag not in _SAFE_TAGS:
            tag = node.tag.replace(_YAML_TAG, "!!", 1)
            raise ConfigError(
                f"unsupported YAML tag {tag!r} (a config holds only plain strings, numbers, "
                "booleans, lists and mappings)",
                location(source, _mark(node)),
            )
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                stack.extend((key_node, value_node))


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# -- pyproject.toml ------------------------------------------------------------------------------


def pyproject_entries(text: str, source: str, *, required: bool) -> list[Entry] | None:
    """The ``[tool.gradcheck]`` table as entries; None if there is none and it is not required."""
    if _toml is None:
        if required:
            raise ConfigError("reading TOML needs Python >= 3.11 or the 'tomli' package", source)
        return None
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as e:
        if not required and "gradcheck" not in text:
            return None  # someone else's broken pyproject.toml
        message = str(e)
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        where = shown(source)
        if at:
            message = message[: at.start()]
            where = f"{where}:{at.group(1)}:{at.group(2)}"
        raise ConfigError(f"invalid TOML: {message}", where) from None
    tool = data.get("tool")
    table = tool.get("gradcheck") if isinstance(tool, dict) else None
    if table is None:
        if required:
            raise ConfigError("no [tool.gradcheck] table", shown(source))
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"must be a table, not {type_name(table)}", location(source, None))
    spots = toml_positions(text)
    entries = []
    for key, value in table.items():
        key_at, value_at, items_at = spots.get(key, (None, None, []))
        entries.append(Entry(key, value, key_at, value_at, list(items_at)))
    return entries


# -- locations -----------------------------------------------------------------------------------


def is_toml(path: str) -> bool:
    return path.endswith(".toml")


def shown(path: str) -> str:
    """``path`` relative to the working directory when it is below it (as a user would type it)."""
    if os.path.isabs(path):
        try:
            relative = os.path.relpath(path)
        except ValueError:  # another drive (Windows)
            return path
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            return relative
    return path


def location(source: str | None, position: Position | None) -> str:
    if source is None:
        return ""
    name = shown(source)
    if is_toml(source):
        name = f"{name} [tool.gradcheck]"
        return f"{name}:{position[0]}" if position else name
    return f"{name}:{position[0]}:{position[1]}" if position else name
