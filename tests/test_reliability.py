"""Never lose a run (issue 15): report paths, file modes, honest summaries, crash sites, early Ctrl-C.

Each test runs ``gradcheck`` in a child process on a tiny script written into ``tmp_path`` and
asserts what a user or a CI job sees: the exit status, the one line on stderr, the JSON fields.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

REPORT_SCHEMA = json.loads(
    (Path(__file__).parents[1] / "gradcheck_cli" / "schemas" / "report.schema.json").read_text()
)

ONE_STEP = """\
import torch
from torch import nn

model = nn.Linear(3, 1)
model(torch.randn(4, 3)).sum().backward()
"""


def gradcheck(
    *args: str, cwd: Path, env: dict[str, str] | None = None, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GRADCHECK_CONFIG", "COLUMNS"):
        full_env.pop(key, None)

    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        [sys.executable, "-m", "gradcheck_cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=set_umask,
    )


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gradcheck:")]


# -- 1. report paths ------------------------------------------------------------------------------

# A script that would leave a marker if it ran: a refused path must stop gradcheck before it.
MARKS = ONE_STEP + "open('ran.txt', 'w').close()\n"


@pytest.mark.parametrize(
    ("option", "path", "why"),
    [
        ("--json", "out_dir", "it is a directory"),
        ("--sarif", "out_dir", "it is a directory"),
        ("--json", "train.py/r.json", "is not a directory"),
        ("--json", "/proc/gradcheck-x.json", "cannot create files in /proc"),
    ],
    ids=["json-directory", "sarif-directory", "under-a-file", "read-only-fs"],
)
def test_bad_report_path_is_refused_before_the_script_runs(
    tmp_path: Path, option: str, path: str, why: str
) -> None:
    (tmp_path / "out_dir").mkdir()
    script(tmp_path, "train.py", MARKS)
    run = gradcheck("run", option, path, "train.py", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith(f"gradcheck: error: {option} {path}: cannot write the report there (")
    assert why in line
    assert not (tmp_path / "ran.txt").exists()


def test_report_that_cannot_be_written_at_the_end_keeps_the_console_report(tmp_path: Path) -> None:
    # The script itself makes the report path a directory: the check up front passed.
    script(tmp_path, "train.py", ONE_STEP + "import os\nos.mkdir('r.json')\n")
    run = gradcheck("run", "--json", "r.json", "--sarif", "r.sarif", "train.py", cwd=tmp_path)
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert our_lines(run.stderr) == [
        "gradcheck: no gradient problems in train.py (1 of 1 backward call checked)",
        "gradcheck: error: could not write --json r.json: Is a directory",
    ]
    sarif = json.loads((tmp_path / "r.sarif").read_text())  # the other file is still written
    assert sarif["version"] == "2.1.0"


# -- 2. file modes --------------------------------------------------------------------------------


def test_report_files_respect_the_umask(tmp_path: Path) -> None:
    script(tmp_path, "train.py", ONE_STEP)
    run = gradcheck(
        "run", "--json", "r.json", "--sarif", "r.sarif", "train.py", cwd=tmp_path, umask=0o022
    )
    assert run.returncode == 0, run.stderr
    for name in ("r.json", "r.sarif"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".gradcheck-")]


# -- 3. summaries and outcomes --------------------------------------------------------------------


def test_summary_after_the_script_raised(tmp_path: Path) -> None:
    script(tmp_path, "train.py", ONE_STEP + "model(torch.randn(4, 5))\n")
    run = gradcheck("run", "--json", "r.json", "train.py", cwd=tmp_path)
    assert run.returncode == 1
    assert our_lines(run.stderr) == [
        "gradcheck: train.py raised RuntimeError after 1 of 1 checked backward call; "
        "no gradient problems in what ran"
    ]
    data = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(data, REPORT_SCHEMA)
    assert data["script"]["exit_code"] == 1
    assert data["script"]["error"]["type"] == "RuntimeError"
    assert data["summary"]["outcome"] == "script_failed"


def test_summary_after_sys_exit_3_is_told_apart_from_an_internal_error(tmp_path: Path) -> None:
    script(tmp_path, "train.py", "import sys\n" + ONE_STEP + "sys.exit(3)\n")
    run = gradcheck("run", "--json", "r.json", "train.py", cwd=tmp_path)
    assert run.returncode == 3
    assert our_lines(run.stderr) == [
        "gradcheck: train.py exited with status 3 after 1 of 1 checked backward call; "
        "no gradient problems in what ran"
    ]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["script"]["exit_code"] == 3
    assert data["script"]["error"] is None
    assert data["summary"]["outcome"] == "script_failed"
    assert data["internal_errors"] == []


def test_outcome_clean(tmp_path: Path) -> None:
    script(tmp_path, "train.py", ONE_STEP)
    run = gradcheck("run", "--json", "r.json", "train.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["outcome"] == "clean"


def test_outcome_findings_and_usage_error(tmp_path: Path) -> None:
    script(
        tmp_path,
        "train.py",
        """\
        import torch
        from torch import nn

        model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
        model[1](model[0](torch.randn(2, 3)).detach()).sum().backward()
        """,
    )
    found = gradcheck("run", "--json", "f.json", "train.py", cwd=tmp_path)
    assert found.returncode == 1, found.stderr
    assert json.loads((tmp_path / "f.json").read_text())["summary"]["outcome"] == "findings"
    usage = gradcheck("run", "--json", "u.json", "--expect", "nothing.*", "train.py", cwd=tmp_path)
    assert usage.returncode == 2, usage.stderr
    assert json.loads((tmp_path / "u.json").read_text())["summary"]["outcome"] == "usage_error"


# -- 4. crash site --------------------------------------------------------------------------------


def test_crash_site_is_the_users_innermost_frame_with_its_line(tmp_path: Path) -> None:
    script(
        tmp_path,
        "train.py",
        """\
        import torch
        from torch import nn


        def forward(model):
            return model(torch.randn(4, 5))


        model = nn.Linear(3, 1)
        model(torch.randn(4, 3)).sum().backward()
        forward(model)
        """,
    )
    run = gradcheck("run", "--json", "r.json", "train.py", cwd=tmp_path)
    assert run.returncode == 1
    assert "torch/nn/modules/linear.py" in run.stderr  # the printed traceback is untouched
    site = json.loads((tmp_path / "r.json").read_text())["script"]["error"]["site"]
    assert site == {
        "file": "train.py",
        "line": 6,
        "function": "forward",
        "code": "return model(torch.randn(4, 5))",
    }


# -- 5. Ctrl-C while torch imports ----------------------------------------------------------------


def test_ctrl_c_while_torch_imports_still_writes_the_report(tmp_path: Path) -> None:
    # A stand-in torch whose import is hit by a real SIGINT, as `timeout -s INT 3` does.
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n"
    )
    script(tmp_path, "train.py", ONE_STEP)
    env = {"PYTHONPATH": str(tmp_path / "fake")}
    run = gradcheck("run", "--json", "r.json", "train.py", cwd=tmp_path, env=env)
    assert run.returncode == 130, run.stderr
    assert our_lines(run.stderr) == [
        "gradcheck: train.py was interrupted before the first backward()"
    ]
    data = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(data, REPORT_SCHEMA)
    assert data["script"]["interrupted"] is True
    assert data["script"]["exit_code"] == 130
    assert data["summary"]["backward_calls"] == 0
    assert data["summary"]["outcome"] == "interrupted"


# -- 7. wrong words -------------------------------------------------------------------------------

FEATURES_UNDER_NO_GRAD = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        with torch.no_grad():
            h = self.features(x)
        return self.head(h)


net = Net()
net(torch.randn(64, 3)).sum().backward()
"""


def test_frozen_without_a_gradient_is_not_said_to_receive_one(tmp_path: Path) -> None:
    script(tmp_path, "train.py", FEATURES_UNDER_NO_GRAD)
    run = gradcheck(
        "run", "--json", "r.json", "--frozen", "net.features.*", "train.py", cwd=tmp_path
    )
    assert run.returncode == 1, run.stderr
    findings = {f["kind"]: f for f in json.loads((tmp_path / "r.json").read_text())["findings"]}
    message = findings["not_frozen"]["message"]
    assert "receives a gradient" not in message
    assert "got no gradient in this backward call" in message
    # Model order (weight before bias) in every finding, not sorted by name.
    for kind in ("no_grad", "not_frozen"):
        assert findings[kind]["parameters"] == ["net.features.0.weight", "net.features.0.bias"]


def test_paths_outside_the_working_directory_are_normalised(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    (base / "ws").mkdir()
    (base / "other").mkdir()
    script(base / "other", "train.py", FEATURES_UNDER_NO_GRAD)
    run = gradcheck("run", "--json", "r.json", "../other/train.py", cwd=base / "ws")
    assert run.returncode == 1, run.stderr
    data = json.loads((base / "ws" / "r.json").read_text())
    expected = str(base / "other" / "train.py")
    assert data["script"]["path"] == expected
    assert data["findings"][0]["site"]["file"] == expected
    assert f"{expected}:12 in forward" in run.stderr
    assert ".." not in run.stderr


# -- 8. the CLI's own help ------------------------------------------------------------------------


def test_run_help_names_the_script_as_required_with_real_metavars_and_sections(
    tmp_path: Path,
) -> None:
    run = gradcheck("run", "--help", cwd=tmp_path)
    assert run.returncode == 0
    out = run.stdout
    assert "Usage: gradcheck run [OPTIONS] SCRIPT [ARGS]... | -m MODULE [ARGS]..." in out
    assert "[script]" not in out and "<str>" not in out and "<list[str]>" not in out
    for row in ("--json PATH", "--sarif PATH", "--config PATH", "--stop-after N", "--expect GLOB"):
        assert row in out, row
    for section in ("Arguments:", "Configuration", "Reports:", "Examples:", "Exit codes:"):
        assert section in out, section


def test_init_without_a_script_gives_its_own_usage(tmp_path: Path) -> None:
    run = gradcheck("init", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "gradcheck: error: no script given (usage: gradcheck init SCRIPT [ARGS...] "
        "or gradcheck init -m MODULE [ARGS...])"
    ]


def test_verbose_adds_every_tensor_and_the_full_user_stack(tmp_path: Path) -> None:
    script(tmp_path, "train.py", FEATURES_UNDER_NO_GRAD)
    plain = gradcheck("run", "train.py", cwd=tmp_path)
    verbose = gradcheck("run", "--verbose", "train.py", cwd=tmp_path)
    assert plain.returncode == verbose.returncode == 1
    added = [line for line in verbose.stderr.splitlines() if line not in plain.stderr.splitlines()]
    assert added[:2] == [
        "    tensors (2): net.features.0.weight, net.features.0.bias",
        "    called from train.py:18 in <module>: net(torch.randn(64, 3)).sum().backward()",
    ]
    table = [line.split() for line in verbose.stderr.splitlines()[-7:]]
    assert table[0][:4] == ["gradient", "flow", "backward", "call"]
    assert table[1:] == [
        ["net.features.0"],
        ["weight", "✗", "none", "(no_grad)"],
        ["bias", "✗", "none", "(no_grad)"],
        ["net.head"],
        ["weight", table[5][1], table[5][2]],
        ["bias", table[6][1], table[6][2]],
    ]


# -- 6. gradcheck init and discovered configs -----------------------------------------------------

ACCIDENTAL_FREEZE = """\
import torch
from torch import nn

model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model[2].requires_grad_(False)
for _ in range(3):
    opt.zero_grad()
    model(torch.randn(64, 3)).sum().backward()  # 64 rows: never all four ReLUs dead at once
    opt.step()
"""

OTHER_MODEL = """\
import torch
from torch import nn

net = nn.Linear(3, 1)
net(torch.randn(2, 3)).sum().backward()
"""


def test_init_prints_what_it_wrote_and_comments_out_a_freeze_that_looks_like_a_bug(
    tmp_path: Path,
) -> None:
    script(tmp_path, "train.py", ACCIDENTAL_FREEZE)
    run = gradcheck("init", "train.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "gradcheck.yaml").read_text()
    assert "script: train.py\n" in text
    assert "frozen: []\n" in text  # the accidental freeze is not turned into policy...
    reason = (
        "  # NOT LISTED: the run froze it at train.py:6 (`model[2].requires_grad_(False)`) "
        "but an optimizer was given it; uncomment if the freeze is intended:"
    )
    assert f"{reason}\n  # - model.2.*  # 2 tensors\n" in text  # ...but kept, with the reason
    assert run.stderr.splitlines() == [
        "gradcheck: wrote gradcheck.yaml for train.py:",
        "  script: train.py",
        "  expect:",
        "    - model.0.*  # 2 tensors",
        "  frozen: []",
        "  " + reason,
        "    # - model.2.*  # 2 tensors",
    ]
    # The freeze is still reported by `gradcheck run` with the written config: it came after the
    # optimizer was built and before it ever stepped those tensors, so it is an error.
    again = gradcheck("run", "train.py", cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    assert "✗ requires_grad_false GC106  model.2.* (2 tensors)" in again.stderr


def test_discovered_config_for_another_script_warns_about_unmatched_names(tmp_path: Path) -> None:
    script(tmp_path, "train.py", ACCIDENTAL_FREEZE)
    script(tmp_path, "other.py", OTHER_MODEL)
    assert gradcheck("init", "train.py", cwd=tmp_path).returncode == 0
    run = gradcheck("run", "--json", "r.json", "other.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    note = (
        "gradcheck.yaml:11:5: expect entry 'model.0.*' matches no parameter (ignored, not an "
        "error: this discovered config was written for train.py)"
    )
    assert f"note: {note}" in run.stderr.splitlines()
    assert note in json.loads((tmp_path / "r.json").read_text())["notes"]


def test_named_or_scriptless_config_still_fails_on_unmatched_names(tmp_path: Path) -> None:
    script(tmp_path, "train.py", ACCIDENTAL_FREEZE)
    script(tmp_path, "other.py", OTHER_MODEL)
    assert gradcheck("init", "train.py", cwd=tmp_path).returncode == 0
    named = gradcheck("run", "--config", "gradcheck.yaml", "other.py", cwd=tmp_path)
    assert named.returncode == 2, named.stderr
    assert "expect entry 'model.0.*' matches no parameter" in named.stderr
    text = (tmp_path / "gradcheck.yaml").read_text().replace("script: train.py\n", "")
    (tmp_path / "gradcheck.yaml").write_text(text)
    scriptless = gradcheck("run", "other.py", cwd=tmp_path)
    assert scriptless.returncode == 2, scriptless.stderr


# -- 9. the README's test command -----------------------------------------------------------------


def test_readme_test_command_says_how_long_and_shows_progress() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    setup = readme.split("Set everything up and run the tests", 1)[1]
    command = next(line for line in setup.splitlines() if "python -m pytest" in line)
    assert "-n auto" in command and " -v" in command  # parallel, one line per finished test
    after = setup.split(command, 1)[1].split("\n## ", 1)[0]
    assert re.search(r"The suite takes about \*\*\d+ minutes on an idle 2-core machine\*\*", after)
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"pytest-xdist>=3"' in pyproject  # `-n auto` works after `pip install -e '.[test]'`
