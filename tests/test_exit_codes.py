"""Exit statuses and error output of ``gradcheck run``, compared with plain ``python``.

* The script's stdout is byte-identical to python's whatever way it exits (gradcheck writes to
  stderr only), and its own ending maps as ``python`` maps it: ``sys.exit()``/``sys.exit(0)`` -> 0,
  ``sys.exit(3)`` -> 3, ``sys.exit("msg")`` -> 1 with the message on stderr, an uncaught exception
  -> 1 with python's traceback (the script's frames only, none from gradcheck_cli), a SyntaxError
  reported as python reports it, and a script's own ``sys.excepthook`` honoured.
* Deliberate difference: an uncaught KeyboardInterrupt exits 130 (``python`` kills itself with
  SIGINT, which a parent sees as -2).
* Bad input to gradcheck exits 2 with one ``gradcheck: error: ...`` line and no traceback.
* ``gradcheck --version`` names gradcheck's, torch's and Python's versions.

Every gradcheck process imports torch (~1.5 s), so all the processes of this module are started
together, once, by the ``results`` fixture, and the tests only look at what they produced.
"""

from __future__ import annotations

import platform
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from procs import FIXTURES, GRADCHECK_FORMS, Result, run_all

pytestmark = pytest.mark.slow  # many subprocesses: `pytest -m 'not slow'` skips them

# -- the cases ------------------------------------------------------------------------------------

# sys.exit variants: exit_with.py's argument -> the status both python and gradcheck must give.
EXITS = {"none": 0, "zero": 0, "three": 3, "message": 1}
EXIT_MESSAGE = "training aborted: loss is nan"

# Scripts whose stderr under python must reappear, line for line, in gradcheck's stderr.
# Key -> the script and its arguments.
ERRORS: dict[str, tuple[str, ...]] = {
    "exception": ("raise_error.py",),
    "syntax-error": ("bad_syntax.py",),
    "custom-excepthook": ("custom_excepthook.py",),
}


@dataclass(frozen=True)
class BadInput:
    """``gradcheck run ARGS`` that gradcheck must refuse; the error line must mention ``mentions``."""

    id: str
    args: tuple[str, ...]
    mentions: str | None


BAD_INPUTS = [
    BadInput("missing-file", ("no_such_script.py",), "no_such_script.py"),
    BadInput("directory-without-main", ("empty_dir",), "empty_dir"),
    BadInput("csv-file", ("metrics.csv",), "metrics.csv"),
    BadInput("binary-checkpoint", ("checkpoint.pt",), "checkpoint.pt"),
    BadInput("binary-without-suffix", ("trainer",), "trainer"),
    BadInput("module-not-found", ("-m", "no_such_module_xyz"), "no_such_module_xyz"),
    BadInput("unknown-option", ("--bogus", "exit_with.py", "none"), "--bogus"),
    BadInput("no-script", (), None),
]

# A `File "..."` line of a traceback that points into gradcheck's own package.
GRADCHECK_FRAME = re.compile(r'File "[^"]*gradcheck_cli')


def _build_tree(root: Path) -> None:
    for name in (
        "exit_with.py",
        "raise_error.py",
        "keyboard_interrupt.py",
        "bad_syntax.py",
        "custom_excepthook.py",
    ):
        shutil.copyfile(FIXTURES / name, root / name)
    (root / "empty_dir").mkdir()
    (root / "empty_dir" / "train.py").write_text("print('not __main__.py')\n")
    (root / "metrics.csv").write_text("epoch,loss\n1,0.25\n2,0.125\n")
    # A torch.save() file is a zip archive; an extension-less executable here is an ELF header.
    (root / "checkpoint.pt").write_bytes(b"PK\x03\x04\x14\x00\x00\x00" + bytes(range(256)))
    (root / "trainer").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(64) + bytes(range(256)))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exit_codes")
    _build_tree(path)
    return path


@pytest.fixture(scope="module")
def results(root: Path) -> dict[str, Result]:
    """Every process this module needs, keyed ``"<what>/<form>"`` (form ``python`` = baseline)."""
    scripts: dict[str, tuple[str, ...]] = {f"exit-{mode}": ("exit_with.py", mode) for mode in EXITS}
    scripts.update(ERRORS)
    scripts["keyboard-interrupt"] = ("keyboard_interrupt.py",)
    commands: dict[str, tuple[list[str], Path]] = {}
    for key, args in scripts.items():
        commands[f"{key}/python"] = ([sys.executable, *args], root)
        for form, prefix in GRADCHECK_FORMS.items():
            commands[f"{key}/{form}"] = ([*prefix, "run", *args], root)
    for form, prefix in GRADCHECK_FORMS.items():
        for bad in BAD_INPUTS:
            commands[f"{bad.id}/{form}"] = ([*prefix, "run", *bad.args], root)
        commands[f"version/{form}"] = ([*prefix, "--version"], root)
    return run_all(commands)


def _gradcheck_frames(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if GRADCHECK_FRAME.search(line)]


def _block_as_python_printed_it(python: Result, got: Result) -> list[str]:
    """The lines of ``got.stderr`` that line up with python's whole stderr, from its first line."""
    expected = python.stderr.splitlines()
    assert expected, python.describe()
    lines = got.stderr.splitlines()
    if expected[0] not in lines:
        pytest.fail(f"no {expected[0]!r} line in gradcheck's stderr\n{got.describe()}")
    start = lines.index(expected[0])
    return lines[start : start + len(expected)]


# -- the script's own ending ----------------------------------------------------------------------


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
@pytest.mark.parametrize("mode", EXITS)
def test_sys_exit_status(results: dict[str, Result], mode: str, form: str) -> None:
    python = results[f"exit-{mode}/python"]
    got = results[f"exit-{mode}/{form}"]
    assert python.returncode == EXITS[mode], python.describe()
    assert got.returncode == EXITS[mode], got.describe()
    # Byte for byte, including the unflushed tail written just before exiting and the atexit print.
    assert python.stdout.endswith(b"\xfe\xff\nexiting; [atexit handler ran]"), python.describe()
    assert got.stdout == python.stdout
    assert "to stderr, before exiting" in got.stderr.splitlines(), got.describe()
    assert "Traceback" not in got.stderr, got.describe()
    if mode == "message":
        assert EXIT_MESSAGE in python.stderr.splitlines()
        assert EXIT_MESSAGE in got.stderr.splitlines(), got.describe()


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
def test_uncaught_exception_traceback_matches_python(
    results: dict[str, Result], root: Path, form: str
) -> None:
    """A chained exception: both tracebacks, python's carets, the script's frames only."""
    python = results["exception/python"]
    got = results[f"exception/{form}"]
    assert python.returncode == 1, python.describe()
    assert got.returncode == 1, got.describe()
    assert got.stdout == python.stdout == b"training\n"
    # The script's frames, with its file name and the raising line, are there ...
    raising_line = '    raise RuntimeError(f"cannot resume training from {path}") from exc'
    frame = f'File "{root / "raise_error.py"}", line 9, in load_checkpoint'
    assert frame in got.stderr, got.describe()
    assert raising_line in got.stderr.splitlines(), got.describe()
    # ... gradcheck's are not ...
    assert _gradcheck_frames(got.stderr) == [], got.describe()
    # ... and the whole traceback is python's, line for line.
    assert python.stderr.startswith("Traceback (most recent call last):"), python.describe()
    assert _block_as_python_printed_it(python, got) == python.stderr.splitlines()


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
def test_keyboard_interrupt_exits_130(results: dict[str, Result], form: str) -> None:
    """The shell's convention; python itself would die of SIGINT (a parent sees -2)."""
    got = results[f"keyboard-interrupt/{form}"]
    assert got.returncode == 130, got.describe()
    assert _gradcheck_frames(got.stderr) == [], got.describe()


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
def test_syntax_error_reported_as_python_does(
    results: dict[str, Result], root: Path, form: str
) -> None:
    python = results["syntax-error/python"]
    got = results[f"syntax-error/{form}"]
    assert python.returncode == 1, python.describe()
    assert got.returncode == 1, got.describe()
    assert "SyntaxError" in got.stderr, got.describe()
    assert f'File "{root / "bad_syntax.py"}", line 5' in got.stderr, got.describe()
    assert _gradcheck_frames(got.stderr) == [], got.describe()
    assert "Traceback" not in got.stderr, got.describe()  # python prints none for this
    assert _block_as_python_printed_it(python, got) == python.stderr.splitlines()


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
def test_script_excepthook_is_honoured(results: dict[str, Result], form: str) -> None:
    """The hook runs instead of the default one, and sees only the script's frames."""
    python = results["custom-excepthook/python"]
    got = results[f"custom-excepthook/{form}"]
    assert python.returncode == 1, python.describe()
    assert got.returncode == 1, got.describe()
    assert "Traceback" not in got.stderr, got.describe()
    assert _block_as_python_printed_it(python, got) == python.stderr.splitlines()


# -- gradcheck's own errors -----------------------------------------------------------------------


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.id for bad in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_exit_2(
    results: dict[str, Result], bad: BadInput, form: str
) -> None:
    got = results[f"{bad.id}/{form}"]
    assert got.returncode == 2, got.describe()
    assert got.stdout == b"", got.describe()
    assert "Traceback" not in got.stderr, got.describe()
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, got.describe()
    assert lines[0].startswith("gradcheck: error:"), got.describe()
    if bad.mentions is not None:
        assert bad.mentions in lines[0], got.describe()


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
def test_version_names_gradcheck_torch_and_python(results: dict[str, Result], form: str) -> None:
    got = results[f"version/{form}"]
    assert got.returncode == 0, got.describe()
    out = got.stdout.decode()
    assert metadata.version("gradcheck-cli") in out, got.describe()
    assert metadata.version("torch") in out, got.describe()
    assert platform.python_version() in out, got.describe()
