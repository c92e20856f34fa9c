"""The names in a config's lists: exact names and fnmatch-style globs (``model.encoder.*``)
matched against the names a run reports, with indices written ``[0]`` taken literally."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence


def match_names(
    patterns: Sequence[str], names: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Which of ``names`` each pattern matches (every pattern is a key), and the unmatched patterns.

    A pattern matches a name it equals, or as an fnmatch-style glob on the whole dotted name
    (case-sensitive): ``*`` is any run of characters, dots included (``model.encoder.*``), ``?`` is
    one character, and ``[...]`` is a character class (``[!...]`` negated) -- except that a bracket
    group holding an integer or a quoted string (``[0]``, ``[12]``, ``['key']``) is literal, as in
    the names gradcheck reports (``model.blocks[0].weight``, ``learner.vars[0]``). So ``[12]`` is
    index 12, not "1 or 2"; write ``[1-2]`` for that class.
    """
    matches: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for pattern in patterns:
        if pattern in matches:
            continue
        regex = _glob_regex(pattern)
        hits = [name for name in names if name == pattern or regex.fullmatch(name)]
        matches[pattern] = hits
        if not hits:
            unmatched.append(pattern)
    return matches, unmatched


_LITERAL_INDEX = re.compile(r"\[(-?\d+|'[^']*'|\"[^\"]*\")\]")


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            literal = _LITERAL_INDEX.match(pattern, i)
            if literal:
                out.append(re.escape(literal.group()))
                i = literal.end()
                continue
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\").replace("[", "\\[")
                body = re.sub(r"([&~|])", r"\\\1", body)  # no set operations
                if body.startswith("!"):
                    body = "^" + body[1:]
                elif body.startswith("^"):
                    body = "\\" + body
                out.append(f"[{body}]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:  # e.g. a reversed range `[z-a]`: match the pattern literally
        return re.compile(re.escape(pattern))
