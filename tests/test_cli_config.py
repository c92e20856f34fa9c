"""The CLI as CI uses it: config discovery and each key's effect, reports, exit codes, init, schema.

Every test runs ``python -m gradcheck_cli`` in a subprocess on a real script and asserts what a
user sees: the exit code, the one-line error, the JSON/SARIF files, the annotations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_scripts"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPORT_SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schemas" / "report.schema.json").read_text())
SARIF_SCHEMA = json.loads(
    (Path(__file__).resolve().parent / "data" / "sarif-schema-2.1.0.json").read_text()
)


def gradcheck(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GRADCHECK_CONFIG"):
        if env is None or key not in env:
            full_env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user project: the detach sample as train.py, in a git repository."""
    (tmp_path / ".git").mkdir()
    shutil.copy(SAMPLES / "detach.py", tmp_path / "train.py")
    return tmp_path


def _bug_line(path: Path) -> int:
    return next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.endswith("# <- BUG")
    )


def test_config_file_expect_typo_is_one_line_exit_2(project: Path) -> None:
    (project / "gradcheck.yaml").write_text(
        "steps: 2\nexpect:\n  - model.decoder.*\n  - model.encdr.*\n"
    )
    run = gradcheck("run", "train.py", cwd=project)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert lines[-1] == (
        "gradcheck: error: gradcheck.yaml:4:5: expect entry 'model.encdr.*' matches no parameter; "
        "closest: model.encoder.0.weight, model.encoder.0.bias, model.encoder.2.weight"
    )
    assert "Traceback" not in run.stderr


def test_config_validation_error_before_running(project: Path) -> None:
    (project / "gradcheck.yaml").write_text("expct: [model.*]\n")
    run = gradcheck("run", "train.py", cwd=project)
    assert run.returncode == 2
    assert run.stdout == ""  # the script never ran
    assert (
        run.stderr.strip()
        == "gradcheck: error: gradcheck.yaml:1:1: unknown key 'expct' (did you mean 'expect'?)"
    )


def test_allow_none_ignore_and_cli_override(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.gradcheck]\nallow_none = ['model.encoder.*']\n")
    assert gradcheck("run", "train.py", cwd=project).returncode == 0  # allowed by pyproject.toml
    # The CLI wins over the file: an empty allow list is not possible, but --fail-on is.
    assert gradcheck("run", "--fail-on", "error", "train.py", cwd=project).returncode == 0
    (project / "pyproject.toml").unlink()
    assert gradcheck("run", "train.py", cwd=project).returncode == 1
    assert gradcheck("run", "--fail-on", "never", "train.py", cwd=project).returncode == 0
    # Without the allowance, ignoring the finding's rule id or its kind is what makes it pass.
    assert gradcheck("run", "--ignore", "GC101", "train.py", cwd=project).returncode == 0
    assert gradcheck("run", "--ignore", "detach", "train.py", cwd=project).returncode == 0
    assert gradcheck("run", "--ignore", "GC102", "train.py", cwd=project).returncode == 1


def test_frozen_that_is_not_frozen(project: Path) -> None:
    report = project / "r.json"
    run = gradcheck(
        "run", "--frozen", "model.decoder.*", "--json", str(report), "train.py", cwd=project
    )
    assert run.returncode == 1
    kinds = {f["kind"]: f for f in json.loads(report.read_text())["findings"]}
    assert sorted(kinds["not_frozen"]["parameters"]) == sorted(
        [
            "model.decoder.0.weight",
            "model.decoder.0.bias",
            "model.decoder.2.weight",
            "model.decoder.2.bias",
        ]
    )


def test_expect_makes_a_frozen_parameter_an_error(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "correct_finetune_frozen.py", tmp_path / "ft.py")
    assert gradcheck("run", "ft.py", cwd=tmp_path).returncode == 0  # frozen on purpose: fine
    report = tmp_path / "r.json"
    run = gradcheck(
        "run", "--expect", "model.backbone.*", "--json", str(report), "ft.py", cwd=tmp_path
    )
    assert run.returncode == 1
    (finding,) = [f for f in json.loads(report.read_text())["findings"] if f["severity"] == "error"]
    assert finding["kind"] == "requires_grad_false"
    assert all(p.startswith("model.backbone.") for p in finding["parameters"])


def test_stop_after_ends_a_long_loop_that_catches_exceptions(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run = gradcheck(
        "run",
        "--stop-after",
        "1",
        "--json",
        str(report),
        str(FIXTURES / "long_loop.py"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    # Stopped inside the first optimizer.step() (after its checks), before the loop printed anything,
    # although the loop catches every Exception.
    assert run.stdout == ""
    data = json.loads(report.read_text())
    assert data["script"]["stopped_early"] is True
    assert data["summary"]["steps_checked"] == 1
    assert "stopped early" in run.stderr


def test_report_is_complete_after_ctrl_c(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run = gradcheck("run", "--json", str(report), str(FIXTURES / "interrupted.py"), cwd=tmp_path)
    assert run.returncode == 130
    assert "KeyboardInterrupt" in run.stderr
    data = json.loads(report.read_text())
    jsonschema.validate(data, REPORT_SCHEMA)
    assert data["script"]["interrupted"] is True
    assert data["script"]["exit_code"] == 130
    assert [f["kind"] for f in data["findings"] if f["severity"] == "error"] == ["detach"]


def test_sarif_and_github_annotations(project: Path) -> None:
    sarif = project / "out.sarif"
    summary = project / "summary.md"
    summary.write_text("previous step\n")
    run = gradcheck(
        "run",
        "--sarif",
        str(sarif),
        "train.py",
        cwd=project,
        env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert run.returncode == 1
    log = json.loads(sarif.read_text())
    jsonschema.validate(log, SARIF_SCHEMA)
    (result,) = [r for r in log["runs"][0]["results"] if r["level"] == "error"]
    assert result["ruleId"] == "GC101"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "train.py"
    assert location["region"]["startLine"] == _bug_line(project / "train.py")
    annotations = [line for line in run.stderr.splitlines() if line.startswith("::error ")]
    assert annotations and annotations[0].startswith(
        f"::error file=train.py,line={_bug_line(project / 'train.py')},"
    )
    text = summary.read_text()
    assert text.startswith("previous step\n") and "GC101" in text


def test_init_writes_a_config_that_runs_clean_on_a_correct_script(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "correct_finetune_frozen.py", tmp_path / "ft.py")
    run = gradcheck("init", "ft.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "gradcheck.yaml").read_text()
    assert "expect:\n  - model.head.*" in text
    assert "frozen:\n  - model.backbone.*" in text
    assert gradcheck("run", "ft.py", cwd=tmp_path).returncode == 0  # the written config holds
    again = gradcheck("init", "ft.py", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("which", ["report", "config"])
def test_schema_command_prints_a_valid_schema(which: str, tmp_path: Path) -> None:
    run = gradcheck("schema", which, cwd=tmp_path)
    assert run.returncode == 0
    printed = json.loads(run.stdout)
    jsonschema.Draft202012Validator.check_schema(printed)
    if which == "report":
        assert printed == REPORT_SCHEMA
    else:  # the config's schema, with the kinds of the registry filled in
        assert set(printed["properties"]) >= {"expect", "allow_none", "steps", "zero_atol"}
        assert "zero_grad_flow" in printed["$defs"]["ignorable"]["enum"]
        assert "GC201" in printed["$defs"]["ignorable"]["enum"]
