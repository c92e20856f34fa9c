"""FSDP2 (``fully_shard``) end to end, two gloo ranks on CPU, launched by ``gradcheck run
--nproc-per-node 2`` (torch's elastic agent), and the pieces of that launch and of the merge of
sharded gradients without processes.

``tests/fixtures/fsdp_train.py --bugs`` plants one bug of each None-gradient kind (and an all-zero
gradient), each on a line marked ``# BUG <kind>``; ``--no-shard`` runs the same model in one
process without FSDP, the reference the sharded runs must match: same kinds, names (no wrapper
prefix), lines — with ``reshard_after_forward`` True and False and with bf16 mixed precision. The
clean run is clean, although one parameter's gradient is all-zero on rank 0's shard (not on rank
1's). The launches of the selected tests are queued once and run two at a time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import torch

from gradcheck_cli import distributed, launch
from gradcheck_cli.errors import CommandError
from gradcheck_cli.model import Checked, Finding, Report, ScriptInfo, Site, Step

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = "tests/fixtures/fsdp_train.py"
SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schemas" / "report.schema.json").read_text())
TIMEOUT = 180.0
CONCURRENCY = 2  # launches at once (each: launcher + two ranks) on a two-core machine
HEADER = re.compile(r"^gradcheck: (?:no gradient problems|\d+ findings?) in ", re.M)
BUG_NAMES = {
    "detach": "enc",
    "no_grad": "side",
    "python_scalar_roundtrip": "gate",
    "unused_parameter": "extra",
    "zero_grad_flow": "zeroed",
    "param_not_in_optimizer": "head",
    "requires_grad_false": "frozen",
}


def _gloo() -> bool:
    dist = getattr(torch, "distributed", None)
    return bool(dist is not None and dist.is_available() and dist.is_gloo_available())


needs_gloo = pytest.mark.skipif(not _gloo(), reason="torch.distributed with gloo is unavailable")


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    for key in ("PYTHONSAFEPATH", "TORCH_DISTRIBUTED_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    env.pop("TORCHELASTIC_RUN_ID", None)
    return env


def _marked_lines() -> dict[str, int]:
    lines = (ROOT / FIXTURE).read_text().splitlines()
    return {
        m.group(1): i
        for i, line in enumerate(lines, 1)
        if (m := re.search(r"# BUG (\w+)$", line.rstrip()))
    }


# name -> (gradcheck options, script arguments)
LAUNCHES: dict[str, tuple[list[str], list[str]]] = {
    "reference": ([], ["--bugs", "--no-shard"]),
    "bugs": (["--nproc-per-node", "2"], ["--bugs"]),
    "bugs-unsharded": (["--nproc-per-node=2", "-v"], ["--bugs", "--keep-unsharded"]),
    "bugs-bf16": (["--nproc-per-node", "2", "-q"], ["--bugs", "--bf16"]),
    "clean": (["--nproc-per-node", "2"], []),
    "clean-bf16-unsharded": (["--nproc-per-node", "2"], ["--bf16", "--keep-unsharded"]),
}


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str
    report: dict


def _launch(name: str, work: Path) -> Done:
    opts, script_args = LAUNCHES[name]
    report = work / f"{name}.json"
    cmd = [sys.executable, "-m", "gradcheck_cli", "run", *opts, "--json", str(report), FIXTURE]
    cmd += ["--", *script_args] if script_args else []
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its ranks
        out, err = proc.communicate()
        pytest.fail(f"timed out after {TIMEOUT:.0f} s: {' '.join(cmd)}\n{err[-4000:]}")
    data = json.loads(report.read_text()) if report.exists() else {}
    return Done(proc.returncode, out, err, data)


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Every launch the selected tests use, queued at once."""
    wanted = {"reference"}
    for item in request.session.items:
        if item.module is request.module and hasattr(item, "callspec"):
            wanted.add(item.callspec.params.get("launch", "reference"))
    work = tmp_path_factory.mktemp("fsdp")
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        futures: dict[str, Future[Done]] = {
            name: pool.submit(_launch, name, work) for name in LAUNCHES if name in wanted
        }
        yield futures


def _findings(report: dict) -> list[tuple[str, tuple[str, ...], int, str]]:
    return sorted(
        (f["kind"], tuple(sorted(f["parameters"])), f["site"]["line"], f["severity"])
        for f in report["findings"]
    )


def _assert_one_clean_report(done: Done) -> None:
    """One console report (rank 0's), none of torchrun's failure output, the script's stdout once."""
    assert len(HEADER.findall(done.stderr)) == 1, done.stderr[-4000:]
    for noise in ("ChildFailedError", "Traceback", "FAILED", "Sending process", "exitcode"):
        assert noise not in done.stderr, done.stderr[-4000:]
    assert re.fullmatch(r"(step \d: loss \d+\.\d{4}\n){2}", done.stdout), done.stdout
    jsonschema.validate(done.report, SCHEMA)
    assert not done.report["internal_errors"], done.report["internal_errors"]
    assert "merged from 2 of 2 ranks" in done.report["notes"]


@pytest.mark.slow
@needs_gloo
def test_reference_run_finds_each_planted_bug(runs: dict[str, Future[Done]]) -> None:
    """The unsharded reference: each kind once, on its marked line, with its module's names."""
    done = runs["reference"].result()
    assert done.code == 1, done.stderr[-4000:]
    lines = _marked_lines()
    assert set(lines) == set(BUG_NAMES)
    expected = sorted(
        (
            kind,
            (f"model.{mod}.bias", f"model.{mod}.weight"),
            lines[kind],
            "error",  # the freeze comes after the optimizer was built: an error too
        )
        for kind, mod in BUG_NAMES.items()
    )
    assert _findings(done.report) == expected


@pytest.mark.slow
@needs_gloo
@pytest.mark.parametrize("launch", ["bugs", "bugs-unsharded", "bugs-bf16"])
def test_sharded_run_finds_what_the_unsharded_one_does(
    launch: str, runs: dict[str, Future[Done]]
) -> None:
    reference = runs["reference"].result()
    done = runs[launch].result()
    assert done.code == 1, done.stderr[-4000:]
    _assert_one_clean_report(done)
    assert _findings(done.report) == _findings(reference.report)
    for f in done.report["findings"]:
        assert f["ranks"] == [0, 1], f
        assert f["site"]["file"] == FIXTURE
        assert all(re.fullmatch(r"model\.\w+\.(weight|bias)", p) for p in f["parameters"]), f
    detach = next(f for f in done.report["findings"] if f["kind"] == "detach")
    assert [n["label"] for n in detach["path"]][:2] == ["detach: Tensor.detach", "ReluBackward0"]
    assert f"{FIXTURE}:{_marked_lines()['detach']}" in done.stderr
    # All-zero on rank 0's shard only: not all-zero, so neither a finding nor a divergence.
    assert not any("model.halved.weight" in f["parameters"] for f in done.report["findings"])


@pytest.mark.slow
@needs_gloo
@pytest.mark.parametrize("launch", ["clean", "clean-bf16-unsharded"])
def test_clean_sharded_run_is_clean(launch: str, runs: dict[str, Future[Done]]) -> None:
    done = runs[launch].result()
    assert done.code == 0, done.stderr[-4000:]
    _assert_one_clean_report(done)
    assert "no gradient problems" in done.stderr
    assert [f for f in done.report["findings"] if f["severity"] != "info"] == []
    checked = {c["name"]: c for c in done.report["steps"][0]["checked"]}
    assert len(checked) == 18 and all(c["state"] == "ok" for c in checked.values()), checked
    # The whole gradient's norm, from both shards (rank 0's own shard of it is all zero).
    assert checked["model.halved.weight"]["norm"] > 0


# -- without processes ---------------------------------------------------------------------------


def _report(findings: list[Finding], checked: list[Checked]) -> Report:
    return Report(
        tool={"name": "gradcheck", "version": "0"},
        environment={},
        script=ScriptInfo(path="train.py", argv=["train.py"], exit_code=0),
        config={"fail_on": "error"},
        steps=[Step(0, "Tensor.backward", None, None, checked)],
        findings=findings,
        steps_seen=1,
        steps_checked=1,
    )


def _zero(names: list[str], line: int = 7) -> Finding:
    return Finding(
        id="GC201",
        kind="zero_grad_flow",
        severity="error",
        grad_state="zero",
        parameters=names,
        site=Site("train.py", line, "forward", "y = x * mask"),
        stack=[],
        steps=[0],
        message="the gradient is all zero",
        hint="",
    )


def test_merge_counts_a_sharded_gradient_zero_only_when_every_shard_is() -> None:
    w, b = "model.fc.weight", "model.fc.bias"
    rank0 = _report([_zero([w, b])], [Checked(w, "zero", 0.0), Checked(b, "zero", 0.0)])
    rank1 = _report([_zero([b])], [Checked(w, "ok", 4.0), Checked(b, "zero", 0.0)])
    parts = {0: distributed.Part(rank0, [w, b]), 1: distributed.Part(rank1, [w, b])}
    merged = distributed.merge(parts, 2)
    assert [(f.kind, f.parameters, f.ranks) for f in merged.findings] == [
        ("zero_grad_flow", [b], [0, 1])
    ]
    states = {c.name: (c.state, c.norm) for c in merged.steps[0].checked}
    assert states == {w: ("ok", 4.0), b: ("zero", 0.0)}


def test_merge_keeps_a_zero_on_one_rank_of_a_replicated_parameter_divergent() -> None:
    """Without sharding (DDP), a gradient zero on one rank only is still the divergence it was."""
    w = "model.fc.weight"
    rank0 = _report([_zero([w])], [Checked(w, "zero", 0.0)])
    rank1 = _report([], [Checked(w, "ok", 4.0)])
    merged = distributed.merge({0: distributed.Part(rank0), 1: distributed.Part(rank1)}, 2)
    assert [(f.kind, f.parameters, f.ranks) for f in merged.findings] == [
        ("rank_divergent", [w], [0])
    ]


def test_merge_says_which_rank_s_script_failed() -> None:
    rank1 = _report([], [])
    rank1.script.exit_code = 3
    merged = distributed.merge(
        {0: distributed.Part(_report([], [])), 1: distributed.Part(rank1)}, 2
    )
    assert merged.script.exit_code == 0
    assert "on rank 1 the script exited with status 3" in merged.notes


def test_part_round_trip_carries_the_sharded_names(tmp_path: Path) -> None:
    report = _report([_zero(["model.fc.bias"])], [])
    path = tmp_path / "rank1.json"
    distributed.write_part(report, 1, str(tmp_path), ["model.fc.bias"], timeout=0.0)
    parts = distributed.collect(str(tmp_path), 2, started=0.0, timeout=0.0)
    assert path.exists()
    assert parts[1].sharded == ["model.fc.bias"]
    assert parts[1].report.findings[0].parameters == ["model.fc.bias"]


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ({0: 1, 1: -signal.SIGTERM}, 1),  # findings on rank 0; the agent then stopped rank 1
        ({1: -signal.SIGTERM, 0: 4}, 4),
        ({1: 3}, 3),  # rank 0 was fine; rank 1's script exited 3
        ({1: -signal.SIGKILL}, 128 + signal.SIGKILL),
    ],
)
def test_launch_status_is_rank_0s_first(codes: dict[int, int], status: int) -> None:
    assert launch.status_of(codes) == status


@pytest.mark.parametrize("value", ["0", "-1", "two", ""])
def test_bad_nproc_is_a_usage_error(value: str) -> None:
    with pytest.raises(CommandError, match="--nproc-per-node must be a positive number"):
        launch.check_nproc(value)


def test_nproc_per_node_from_the_command_line(tmp_path: Path) -> None:
    """One line and exit 2, no traceback: a bad count, and the option under torchrun."""
    script = tmp_path / "train.py"
    script.write_text("print('never')\n")
    base = [sys.executable, "-m", "gradcheck_cli", "run"]
    bad = subprocess.run(
        [*base, "--nproc-per-node", "zero", str(script)], capture_output=True, text=True, env=_env()
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "gradcheck: error: --nproc-per-node must be a positive number or one of auto, cpu, gpu, "
        "not 'zero'"
    ]
    nested = subprocess.run(
        [*base, "--nproc-per-node", "2", str(script)],
        capture_output=True,
        text=True,
        env={**_env(), "TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2"},
    )
    assert nested.returncode == 2
    assert "under torchrun" in nested.stderr and "Traceback" not in nested.stderr
    assert nested.stdout == ""
