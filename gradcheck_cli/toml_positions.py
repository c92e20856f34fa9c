"""Where keys, values and list entries of ``[tool.gradcheck]`` sit in a pyproject.toml (line,
column; 1-based), for messages that point at them. A best-effort line scanner: ``tomllib`` reads
the values, this only finds them."""

from __future__ import annotations

import re

Position = tuple[int, int]


_TOML_HEADER = re.compile(r"^\s*\[\[?([^\[\]]*)\]\]?\s*(?:#.*)?$")
_TOML_KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*([=.])""")


def toml_positions(
    text: str,
) -> dict[str, tuple[Position, Position, list[Position | None]]]:
    """Best effort: where each key of ``[tool.gradcheck]``, its value and its list entries are."""
    lines = text.splitlines()
    found: dict[str, tuple[Position, Position, list[Position | None]]] = {}
    inside = False
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _TOML_HEADER.match(line)
        if header:
            parts = [p.strip().strip("\"'") for p in header.group(1).split(".")]
            inside = parts[:2] == ["tool", "gradcheck"]
            if inside and len(parts) > 2:  # [tool.gradcheck.something]
                at = (i + 1, line.index("[") + 1)
                found.setdefault(parts[2], (at, at, []))
            i += 1
            continue
        key = _TOML_KEY.match(line) if inside else None
        if key:
            group = next(g for g in (1, 2, 3) if key.group(g) is not None)
            name = key.group(group)
            key_at = (i + 1, key.start(group) + (1 if group == 3 else 0))
            if key.group(4) == "=":
                value_at, items_at, i = _toml_value(lines, i, key.end())
            else:
                value_at, items_at = key_at, []
            found.setdefault(name, (key_at, value_at, items_at))
        i += 1
    return found


def _toml_value(
    lines: list[str], row: int, col: int
) -> tuple[Position, list[Position | None], int]:
    """Scan the value starting at ``lines[row][col:]``: its position, its entries', its last row."""
    value_at: Position | None = None
    items: list[Position | None] = []
    depth = 0
    expect_item = False
    while row < len(lines):
        line = lines[row]
        while col < len(line):
            c = line[col]
            if c in " \t":
                col += 1
                continue
            if c == "#":
                break
            at = (row + 1, col + 1)
            if value_at is None:
                value_at = at
                if c != "[":
                    return value_at, [at], row  # a scalar; a lone string counts as one entry
            if depth == 1 and expect_item and c not in ",]":
                items.append(at)
                expect_item = False
            if c in "\"'":
                col = _skip_string(line, col)
                continue
            if c == "[":
                depth += 1
                expect_item = depth == 1
            elif c == "]":
                depth -= 1
                if depth == 0:
                    return value_at, items, row
            elif c == "," and depth == 1:
                expect_item = True
            col += 1
        row += 1
        col = 0
    return value_at or (row, 1), items, max(row - 1, 0)


def _skip_string(line: str, col: int) -> int:
    quote = line[col]
    col += 1
    while col < len(line):
        if line[col] == "\\" and quote == '"':
            col += 2
            continue
        if line[col] == quote:
            return col + 1
        col += 1
    return col
