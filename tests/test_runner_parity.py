"""``gradcheck run X`` must start the user's script exactly as ``python X`` does.

A probe script (``runner_fixtures/probe.py``) dumps, as JSON, everything a script can observe about
how it was started: ``__name__``, ``__file__``, ``sys.argv``, ``sys.path``, ``__spec__``,
``__package__``, ``__loader__``, ``__builtins__``, the cwd, whether ``sys.modules["__main__"]`` is
the running module and whether a function defined in it can be pickled. Each case runs the probe
once under ``python`` and once under each gradcheck invocation form (the ``gradcheck`` console
script and ``python -m gradcheck_cli``) and the dumps, and the stdout bytes, must be identical.
The only deliberate difference: ``gradcheck run`` drops a single ``--`` right after the script.
A script using a DataLoader with two worker processes must also print what it prints under python.
(Awkward stdout - raw bytes, no final newline, atexit output - is checked in test_exit_codes.py.)

Every gradcheck process imports torch (~1.5 s), so all the processes of this module are started
together, once, by the ``results`` fixture, and the tests only look at what they produced.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from procs import FIXTURES, GRADCHECK_FORMS, Result, run_all

pytestmark = pytest.mark.slow  # many subprocesses: `pytest -m 'not slow'` skips them

# -- the cases ------------------------------------------------------------------------------------

# The tree built under a temporary ROOT (probe.py copied to every *.py / __main__.py below):
#   ROOT/scripts/probe.py         ROOT/elsewhere/             (an unrelated cwd)
#   ROOT/app/__main__.py          ROOT/proj/pkg/{__init__,mod,__main__}.py


@dataclass(frozen=True)
class Case:
    """One way of starting the probe. ``{root}`` in an argument is the temporary ROOT."""

    id: str
    cwd: str  # relative to ROOT
    python_args: tuple[str, ...]  # what follows ``python``
    run_args: tuple[str, ...] = ()  # what follows ``gradcheck run``; default: python_args
    expected_argv: tuple[str, ...] | None = None  # the sys.argv the probe must see, if fixed

    @property
    def gradcheck_args(self) -> tuple[str, ...]:
        return self.run_args or self.python_args


CASES = [
    Case(
        "absolute-path-from-other-cwd",
        cwd="elsewhere",
        python_args=("{root}/scripts/probe.py", "--epochs", "1", "--", "--lr", "2"),
        # A `--` that does not directly follow the script is the script's business.
        expected_argv=("{root}/scripts/probe.py", "--epochs", "1", "--", "--lr", "2"),
    ),
    Case(
        "relative-path-option-like-args",
        cwd=".",
        python_args=("scripts/probe.py", "--json", "x", "-m", "y", "--help"),
        expected_argv=("scripts/probe.py", "--json", "x", "-m", "y", "--help"),
    ),
    Case("module", cwd="proj", python_args=("-m", "pkg.mod", "--lr", "0.1")),
    Case("package-dir-with-main", cwd=".", python_args=("app",)),
    Case("module-package-with-main", cwd="proj", python_args=("-m", "pkg")),
    Case(
        "double-dash-after-script-dropped",
        cwd="scripts",
        python_args=("probe.py", "--epochs", "1"),
        run_args=("probe.py", "--", "--epochs", "1"),
        # Deliberate: `python probe.py -- --epochs 1` would keep the `--`.
        expected_argv=("probe.py", "--epochs", "1"),
    ),
]
CASE_IDS = [case.id for case in CASES]

# The fields the issue names; everything else in the dump is checked separately (EXTRA_FIELDS).
CONTRACT_FIELDS = (
    "__name__",
    "__file__",
    "sys.argv",
    "sys.path[0]",
    "main_module_is_this_module",
    "__spec__",
    "__package__",
    "__loader__",
    "__builtins__",
    "cwd",
    "pickle_module_level_function",
)
EXTRA_FIELDS = ("__cached__", "dunder_globals", "sys.path")


def _build_tree(root: Path) -> None:
    probe = FIXTURES / "probe.py"
    for directory in ("scripts", "elsewhere", "app", "proj/pkg"):
        (root / directory).mkdir(parents=True)
    for target in (
        "scripts/probe.py",
        "app/__main__.py",
        "proj/pkg/mod.py",
        "proj/pkg/__main__.py",
    ):
        shutil.copyfile(probe, root / target)
    (root / "proj/pkg/__init__.py").write_text("")
    shutil.copyfile(FIXTURES / "dataloader_workers.py", root / "scripts/dataloader_workers.py")


def _expand(args: Sequence[str], root: Path) -> list[str]:
    return [arg.replace("{root}", str(root)) for arg in args]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity")
    _build_tree(path)
    return path


@pytest.fixture(scope="module")
def results(root: Path) -> dict[str, Result]:
    """Every process this module needs, keyed ``"<what>/<form>"`` (form ``python`` = baseline)."""
    commands: dict[str, tuple[list[str], Path]] = {}
    for case in CASES:
        cwd = root / case.cwd
        commands[f"{case.id}/python"] = ([sys.executable, *_expand(case.python_args, root)], cwd)
        for form, prefix in GRADCHECK_FORMS.items():
            args = _expand(case.gradcheck_args, root)
            commands[f"{case.id}/{form}"] = ([*prefix, "run", *args], cwd)
    scripts = root / "scripts"
    commands["dataloader/python"] = ([sys.executable, "dataloader_workers.py"], scripts)
    for form, prefix in GRADCHECK_FORMS.items():
        commands[f"dataloader/{form}"] = ([*prefix, "run", "dataloader_workers.py"], scripts)
    return run_all(commands)


def _dump(result: Result) -> dict[str, Any]:
    assert result.returncode == 0, result.describe()
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the probe printed no JSON dump\n{result.describe()}")


def _pick(dump: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {name: dump.get(name, "<missing>") for name in fields}


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_probe_dump_matches_python(results: dict[str, Result], case: Case, form: str) -> None:
    expected = _pick(_dump(results[f"{case.id}/python"]), CONTRACT_FIELDS)
    got = _pick(_dump(results[f"{case.id}/{form}"]), CONTRACT_FIELDS)
    assert got == expected


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_probe_extra_details_match_python(
    results: dict[str, Result], case: Case, form: str
) -> None:
    """Beyond the named fields: ``__cached__``, the set of dunder globals, the whole sys.path."""
    expected = _pick(_dump(results[f"{case.id}/python"]), EXTRA_FIELDS)
    got = _pick(_dump(results[f"{case.id}/{form}"]), EXTRA_FIELDS)
    assert got == expected


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
@pytest.mark.parametrize(
    "case", [c for c in CASES if c.expected_argv], ids=[c.id for c in CASES if c.expected_argv]
)
def test_script_args_reach_the_script(
    results: dict[str, Result], root: Path, case: Case, form: str
) -> None:
    assert case.expected_argv is not None
    expected = _expand(case.expected_argv, root)
    assert _dump(results[f"{case.id}/python"])["sys.argv"] == expected
    assert _dump(results[f"{case.id}/{form}"])["sys.argv"] == expected


def test_python_baseline_is_what_the_cases_assume(results: dict[str, Result], root: Path) -> None:
    """Guards the harness: the cases really exercise script, directory and -m semantics."""
    script = _dump(results["relative-path-option-like-args/python"])
    assert script["__spec__"] is None
    assert script["__file__"] == str(root / "scripts/probe.py")
    module = _dump(results["module/python"])
    assert module["__spec__"]["name"] == "pkg.mod"
    assert module["sys.argv"] == [str(root / "proj/pkg/mod.py"), "--lr", "0.1"]
    package = _dump(results["module-package-with-main/python"])
    assert package["__spec__"]["name"] == "pkg.__main__"
    directory = _dump(results["package-dir-with-main/python"])
    assert directory["__spec__"]["name"] == "__main__"
    assert directory["sys.path[0]"] == str(root / "app")


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.run_args], ids=[c.id for c in CASES if not c.run_args]
)
def test_stdout_is_byte_identical(results: dict[str, Result], case: Case, form: str) -> None:
    """Where gradcheck gets the same arguments as python (not the dropped-``--`` case)."""
    expected = results[f"{case.id}/python"]
    got = results[f"{case.id}/{form}"]
    assert got.stdout == expected.stdout, got.describe()


@pytest.mark.parametrize("form", GRADCHECK_FORMS)
def test_dataloader_with_two_workers(results: dict[str, Result], form: str) -> None:
    expected = results["dataloader/python"]
    got = results[f"dataloader/{form}"]
    assert expected.returncode == 0, expected.describe()
    assert expected.stdout.endswith(b"done\n"), expected.describe()
    assert got.returncode == 0, got.describe()
    assert got.stdout == expected.stdout
