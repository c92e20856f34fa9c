"""Call sites: whose code is a frame (the user's, or a library's), and cheap stack capture.

Blame goes to the user's own code only. A file is *library* code when it lives in the standard
library, in site-/dist-packages, inside torch or gradcheck, or is a frozen/generated module; anything
else (the script, a project imported through PYTHONPATH, an editable install) is *user* code. The
answer is cached per file name, and stacks are captured by walking ``sys._getframe()`` — source text
is read lazily through ``linecache`` only when a site is reported (``inspect.stack()`` would read
every file of every frame on each call).
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import types
from collections.abc import Callable
from dataclasses import dataclass

from gradcheck_cli.launchers import LAUNCHERS

_GRADCHECK_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_roots() -> tuple[str, ...]:
    roots: set[str] = {_GRADCHECK_DIR + os.sep}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(os.path.realpath(p) + os.sep)
            roots.add(os.path.abspath(p) + os.sep)
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        roots.add(os.path.join(os.path.abspath(p), "lib") + os.sep)
    try:
        import torch

        roots.add(os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
    except Exception:  # pragma: no cover - torch is a dependency
        pass
    return tuple(sorted(roots))


_LIBRARY_ROOTS = _library_roots()
# The `gradcheck` console script that started us is not user code. Only the CLI's entry point
# registers it (``add_launcher``): in a plain ``python my_script.py`` that uses the API,
# ``sys.argv[0]`` is the user's own script, and its frames are the ones to blame.
_LAUNCHERS = LAUNCHERS
_BIN_DIRS = tuple(
    {os.path.join(os.path.abspath(p), "bin") + os.sep for p in (sys.prefix, sys.exec_prefix)}
)
_is_user_cache: dict[str, bool] = {}
# Code names shown instead of a file name: a notebook cell's file -> "<cell 3>".
_DISPLAY_NAMES: dict[str, str] = {}


def forget_user_files() -> None:
    """Drop the cached answers of ``is_user_file`` (the launchers changed)."""
    _is_user_cache.clear()


def set_display_name(filename: str, name: str) -> None:
    """Show ``filename`` as ``name`` in reports (a notebook cell as ``<cell 3>``)."""
    _DISPLAY_NAMES[filename] = name


def is_user_file(filename: str) -> bool:
    """True when ``filename`` is the user's own code (see the module docstring)."""
    cached = _is_user_cache.get(filename)
    if cached is not None:
        return cached
    if filename.startswith("<"):
        # <frozen ...>, <string> from torch's codegen, <__array_function__ ...>: not the user's.
        # Interactive/notebook cells (<stdin>, <ipython-input-...>, <cell 3>) are.
        result = filename.startswith(("<stdin>", "<ipython-input", "<cell "))
    elif "site-packages" in filename or "dist-packages" in filename:
        result = False
    else:
        path = os.path.abspath(filename)
        result = not (
            path.startswith(_LIBRARY_ROOTS) or path.startswith(_BIN_DIRS) or path in _LAUNCHERS
        )
    _is_user_cache[filename] = result
    return result


def display_path(filename: str) -> str:
    """The path as the user would type it: relative to the cwd when under it."""
    shown = _DISPLAY_NAMES.get(filename)
    if shown is not None:
        return shown
    key = (os.getcwd(), filename)  # (a script may change directory)
    shown = _display_cache.get(key)
    if shown is None:
        try:
            rel = os.path.relpath(filename)
        except ValueError:
            return filename
        # Outside the cwd: absolute, without the `/a/ws/../x` that CPython's __file__ joining
        # leaves.
        shown = os.path.normpath(filename) if rel.startswith(os.pardir) else rel
        if len(_display_cache) >= 4096:
            _display_cache.clear()
        _display_cache[key] = shown
    return shown


_display_cache: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Site:
    """One frame: file, line, function. ``code`` (the source line) is looked up on demand."""

    file: str
    line: int
    function: str

    @property
    def code(self) -> str:
        return linecache.getline(self.file, self.line).strip()

    @property
    def display(self) -> str:
        return f"{display_path(self.file)}:{self.line}"


def frame_site(frame: types.FrameType) -> Site:
    return Site(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


@dataclass(frozen=True)
class CallSite:
    """Where an event happened: the user's frame it is blamed on and the user part of the stack.

    ``library`` is true when the immediate caller was library code (torch, a training framework):
    the site is then the nearest user frame, and ``via`` names the library frame in between.
    """

    site: Site
    stack: tuple[Site, ...]
    library: bool = False
    via: Site | None = None
    origin: Site | None = None  # the library frame that made the call, when ``library``


_MAX_STACK = 6
_OVERRIDES = os.path.join("torch", "overrides.py")


def skip_own_frames(
    frame: types.FrameType | None, also: Callable[[types.FrameType], bool] | None = None
) -> types.FrameType | None:
    """The first frame from ``frame`` outwards that is neither gradcheck's own nor torch's
    ``__torch_function__`` dispatcher (``torch/overrides.py``), nor one ``also`` says to skip.

    The one walk every "who called us" question goes through.
    """
    while frame is not None and (
        is_own_file(frame.f_code.co_filename) or (also is not None and also(frame))
    ):
        frame = frame.f_back
    return frame


def is_own_file(filename: str) -> bool:
    """gradcheck's own code, or torch's ``__torch_function__`` dispatcher that calls into it."""
    return filename.startswith(_GRADCHECK_DIR) or filename.endswith(_OVERRIDES)


def first_foreign_frame() -> types.FrameType | None:
    """The immediate caller of a hook (see :func:`skip_own_frames`)."""
    return skip_own_frames(sys._getframe(2))


def capture() -> CallSite | None:
    """The call site of whatever called into gradcheck (a patched function, a torch op).

    The immediate caller is the first frame outside gradcheck; when it is library code the site is
    the nearest user frame further up, and ``via`` names the library frame. Returns None when no
    frame of the stack is user code (e.g. torch calling itself at import time).
    """
    frame = first_foreign_frame()
    if frame is None:
        return None
    library = not is_user_file(frame.f_code.co_filename)
    origin = frame_site(frame) if library else None
    via = None
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        via = frame
        frame = frame.f_back
    if frame is None:
        return None
    first = frame_site(frame)
    stack = [first]
    frame = frame.f_back
    while frame is not None and len(stack) < _MAX_STACK:
        if is_user_file(frame.f_code.co_filename):
            stack.append(frame_site(frame))
        frame = frame.f_back
    return CallSite(
        first,
        tuple(stack),
        library=library,
        via=frame_site(via) if via is not None else None,
        origin=origin,
    )


def caller_is_user() -> bool:
    """Whether whatever called into gradcheck is user code (not torch, not a library)."""
    frame = first_foreign_frame()
    return frame is not None and is_user_file(frame.f_code.co_filename)


def nearest_user_frame() -> types.FrameType | None:
    frame = first_foreign_frame()
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


_site_cache: dict[tuple[types.CodeType, int], Site] = {}


def quick_site() -> Site | None:
    """The nearest user frame as a cached :class:`Site` (no stack): cheap enough for every op."""
    frame = nearest_user_frame()
    if frame is None:
        return None
    key = (frame.f_code, frame.f_lineno)
    site = _site_cache.get(key)
    if site is None:
        if len(_site_cache) > 50_000:
            _site_cache.clear()
        site = _site_cache[key] = frame_site(frame)
    return site
