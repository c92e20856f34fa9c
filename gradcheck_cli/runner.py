"""Run a script or module exactly as ``python SCRIPT`` / ``python -m MODULE`` would.

Modelled on coverage.py's ``PyRunner``: :meth:`ScriptRunner.prepare` resolves the target and turns
bad input into a :class:`CommandError` before anything is changed; :meth:`ScriptRunner.run` builds
a real ``__main__`` module, sets ``sys.argv`` / ``sys.path[0]`` as CPython does, executes the code and
maps the way it ended (``SystemExit``, an exception, Ctrl-C) to the exit status ``python`` would
have given. Everything it changed is restored afterwards, and nothing here ever raises the
script's own exceptions: they are printed as Python prints them and become an :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gradcheck_cli.errors import EXIT_INTERRUPTED, CommandError, GradcheckExit
from gradcheck_cli.model import ScriptError
from gradcheck_cli.model import Site as ModelSite

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Files that are clearly data, not Python: a one-line error beats Python's SyntaxError on a CSV.
_NOT_PYTHON_SUFFIXES = {
    ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".txt", ".md", ".rst", ".pt", ".pth",
    ".ckpt", ".bin", ".npy", ".npz", ".pkl", ".pickle", ".so", ".pyc", ".png", ".jpg", ".h5",
}  # fmt: skip


@dataclass
class Outcome:
    """How the script ended: its exit status as ``python`` would report it, and why."""

    exit_code: int
    error: ScriptError | None = None
    interrupted: bool = False
    stop: GradcheckExit | None = None  # gradcheck ended the script itself (stop_after, bad config)


class ScriptRunner:
    """Runs one script (``python FILE``), directory/zip (``python DIR``) or module (``-m``)."""

    def __init__(self, target: str, args: list[str], as_module: bool = False) -> None:
        self.target = target
        self.args = list(args)
        self.as_module = as_module
        self.code: types.CodeType | None = None
        self.spec: importlib.machinery.ModuleSpec | None = None
        self.file: str | None = None  # __file__ of the __main__ module
        self.loader: object | None = None
        self.package: str | None = None
        self.cached: str | None = None
        self.path0: str | None = None  # what sys.path[0] becomes (None: leave sys.path alone)
        self.argv0: str = target
        self.syntax_error: SyntaxError | None = None

    # -- prepare ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Resolve the target and compile it; raise :class:`CommandError` for bad input."""
        if self.as_module:
            self._prepare_module()
        else:
            self._prepare_path()

    def _prepare_module(self) -> None:
        if not self.target or self.target.startswith("."):
            raise CommandError(f"relative module names are not supported: {self.target!r}")
        # `python -m` puts the cwd first so the module is found there; so must we, before looking.
        self.path0 = None if sys.flags.safe_path else os.getcwd()
        saved = sys.path[:]
        if self.path0 is not None:
            sys.path[0:1] = [self.path0]
        try:
            spec = _find_module_spec(self.target)
        finally:
            sys.path[:] = saved
        self._set_from_spec(spec)
        self.argv0 = spec.origin or self.target

    def _prepare_path(self) -> None:
        path = self.target
        if not os.path.exists(path):
            raise CommandError(f"can't open file {path!r}: no such file or directory")
        if os.path.isdir(path) or _is_zipfile(path):
            # `python DIR` / `python app.zip`: DIR goes first on sys.path and DIR/__main__.py runs.
            entry = os.path.abspath(path)
            spec = importlib.machinery.PathFinder.find_spec("__main__", [entry])
            if spec is None or spec.loader is None:
                raise CommandError(f"can't find '__main__' module in {path!r}")
            self.path0 = entry
            self._set_from_spec(spec)
            self.spec = spec
            self.package = ""
            return
        suffix = Path(path).suffix.lower()
        if suffix == ".ipynb":
            raise CommandError(
                f"{path!r} is a Jupyter notebook, not a script; convert it first: "
                f"jupyter nbconvert --to script {path}"
            )
        if suffix in _NOT_PYTHON_SUFFIXES:
            raise CommandError(f"{path!r} is not a Python script")
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError as e:
            raise CommandError(f"can't open file {path!r}: {e.strerror or e}") from None
        if b"\0" in source:
            raise CommandError(f"{path!r} is not a Python script (it is a binary file)")
        # CPython makes __file__ absolute by plain joining (no normalisation): mirror it exactly.
        self.file = path if os.path.isabs(path) else os.getcwd() + os.sep + path
        self.loader = importlib.machinery.SourceFileLoader("__main__", self.file)
        self.path0 = None if sys.flags.safe_path else os.path.dirname(os.path.realpath(path))
        try:
            self.code = compile(source, self.file, "exec", dont_inherit=True)
        except SyntaxError as e:
            if suffix not in (".py", ".pyw", ""):
                raise CommandError(f"{path!r} is not a Python script") from None
            self.syntax_error = e.with_traceback(None)  # run() reports it as python does
        except ValueError as e:  # e.g. "source code string cannot contain null bytes"
            raise CommandError(f"{path!r} is not a Python script ({e})") from None

    def _set_from_spec(self, spec: importlib.machinery.ModuleSpec) -> None:
        self.spec = spec
        self.file = spec.origin
        self.loader = spec.loader
        self.package = spec.parent
        self.cached = spec.cached
        try:
            self.code = spec.loader.get_code(spec.name)  # type: ignore[union-attr]
        except SyntaxError as e:
            self.syntax_error = e.with_traceback(None)
        except ImportError as e:
            raise CommandError(f"can't load {spec.name!r}: {e}") from None
        if self.code is None and self.syntax_error is None:
            raise CommandError(f"no code object available for {spec.name!r}")

    # -- run -------------------------------------------------------------------------------------

    def make_main_module(self) -> types.ModuleType:
        main = types.ModuleType("__main__")
        main.__file__ = self.file  # type: ignore[assignment]
        main.__loader__ = self.loader  # type: ignore[assignment]
        main.__spec__ = self.spec if (self.as_module or self.package == "") else None
        main.__package__ = self.package
        main.__cached__ = self.cached  # type: ignore[attr-defined]
        main.__builtins__ = sys.modules["builtins"]  # type: ignore[attr-defined]
        main.__annotations__ = {}
        return main

    def run(self, annotate: Callable[[BaseException], None] | None = None) -> Outcome:
        """Execute the prepared code; never raises the script's exceptions (except to our caller's
        KeyboardInterrupt handling, which is mapped here too)."""
        if self.syntax_error is not None:
            sys.excepthook(type(self.syntax_error), self.syntax_error, None)
            return Outcome(1, _describe(self.syntax_error, None))
        assert self.code is not None
        main = self.make_main_module()
        old_main = sys.modules.get("__main__")
        old_argv = sys.argv
        old_path = sys.path[:]
        old_cwd = os.getcwd()
        sys.modules["__main__"] = main
        sys.argv = [self.argv0, *self.args]
        if self.path0 is not None:
            # Our own sys.path[0] (the console script's bin dir, or the cwd of `python -m`) is
            # replaced, not kept: the script must not see gradcheck's import context.
            sys.path[0:1] = [self.path0]
        try:
            try:
                exec(self.code, main.__dict__)
            finally:
                _flush_std_streams()
        except GradcheckExit as e:
            return Outcome(e.exit_code, stop=e)
        except SystemExit as e:
            return Outcome(_exit_status(e.code))
        except KeyboardInterrupt as e:
            _print_exception(e, self.code)
            return Outcome(EXIT_INTERRUPTED, _describe(e, self.code), interrupted=True)
        except BaseException as e:
            if annotate is not None:
                with contextlib.suppress(Exception):
                    annotate(e)  # e.g. explain DDP's "Expected to have finished reduction" crash
            _print_exception(e, self.code)
            return Outcome(1, _describe(e, self.code))
        finally:
            sys.argv = old_argv
            sys.path[:] = old_path
            if old_main is not None:
                sys.modules["__main__"] = old_main
            with contextlib.suppress(OSError):
                os.chdir(old_cwd)
        return Outcome(0)


def _find_module_spec(name: str) -> importlib.machinery.ModuleSpec:
    """``runpy``'s rules for ``-m``: a package runs its ``__main__`` submodule."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError) as e:
        raise CommandError(f"error while finding module specification for {name!r}: {e}") from None
    if spec is None:
        raise CommandError(f"no module named {name!r}")
    if spec.submodule_search_locations is not None:
        if name == "__main__" or name.endswith(".__main__"):
            raise CommandError("cannot use package as __main__ module")
        main_name = name + ".__main__"
        try:
            spec = importlib.util.find_spec(main_name)
        except ImportError:
            spec = None
        if spec is None:
            raise CommandError(
                f"no module named {main_name!r}; {name!r} is a package and cannot be directly executed"
            )
    if spec.loader is None:
        raise CommandError(f"{name!r} is a namespace package and cannot be executed")
    return spec


def _is_zipfile(path: str) -> bool:
    import zipfile

    return os.path.isfile(path) and path.endswith((".zip", ".pyz")) and zipfile.is_zipfile(path)


def _exit_status(code: object) -> int:
    """Map ``SystemExit.code`` exactly as CPython does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    _flush_std_streams()
    print(code, file=sys.stderr)
    return 1


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _is_ours(frame: types.FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_PACKAGE_DIR)


def clean_traceback(
    tb: types.TracebackType | None, script_code: types.CodeType | None
) -> types.TracebackType | None:
    """Drop the frames above the script's module frame and every gradcheck frame below it."""
    if script_code is not None:
        probe = tb
        while probe is not None and probe.tb_frame.f_code is not script_code:
            probe = probe.tb_next
        if probe is not None:
            tb = probe
    frames: list[types.TracebackType] = []
    while tb is not None:
        nxt = tb.tb_next
        if nxt is not None and nxt.tb_frame.f_code.co_name == "handle_torch_function":
            # Our TorchFunctionMode made torch re-dispatch this call (e.g. Tensor.backward): drop
            # the first attempt and the dispatcher so the traceback reads as under plain python.
            tb = nxt.tb_next
            continue
        if not _is_ours(tb.tb_frame):
            frames.append(tb)
        tb = nxt
    new: types.TracebackType | None = None
    for entry in reversed(frames):
        new = types.TracebackType(new, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return new


def _clean_chain(exc: BaseException, script_code: types.CodeType | None) -> None:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = clean_traceback(e.__traceback__, script_code)
        todo += [e.__cause__, e.__context__]


def _print_exception(exc: BaseException, script_code: types.CodeType | None) -> None:
    _clean_chain(exc, script_code)
    _flush_std_streams()
    try:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    except Exception:
        sys.__excepthook__(type(exc), exc, exc.__traceback__)
    _flush_std_streams()


def _describe(exc: BaseException, script_code: types.CodeType | None) -> ScriptError:
    """How the exception looked, with where it was raised: the innermost frame of the script's
    own stack (for the report; the traceback itself is printed)."""
    if isinstance(exc, SyntaxError):
        file, line, function = exc.filename, exc.lineno, ""
    else:
        file = line = None
        function = ""
        entry = _innermost_user_entry(exc.__traceback__)
        if entry is not None:
            file, line = entry.tb_frame.f_code.co_filename, entry.tb_lineno
            function = entry.tb_frame.f_code.co_name
    # The file stays as Python named it: the CLI shows it relative to the restored cwd.
    site = ModelSite(file, line, function, "") if file and line else None
    return ScriptError(type(exc).__name__, str(exc), site)


def _innermost_user_entry(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The innermost frame in the user's own code (the rule findings use), else the innermost."""
    from gradcheck_cli.sites import is_user_file  # imports torch: only once the script ran

    last = user = None
    while tb is not None:
        last = tb
        if is_user_file(tb.tb_frame.f_code.co_filename):
            user = tb
        tb = tb.tb_next
    return user or last
