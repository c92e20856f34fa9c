"""End to end under torchrun: the ``sample_scripts/ddp_*.py`` and ``fsdp_*.py`` samples, two gloo
ranks on CPU.

Each DDP sample carries the usual headers plus ``# gradcheck-launch: torchrun N`` (and, when the
finding is not on every rank, ``# gradcheck-ranks: R ...``). For every one the test launches,
side by side::

    python -m torch.distributed.run --nproc_per_node=N --master_port=P SCRIPT
    python -m torch.distributed.run --nproc_per_node=N --master_port=Q \\
        -m gradcheck_cli run --json REPORT SCRIPT

and asserts gradcheck's exit status, that rank 0's stdout (torchrun forwards every child's
stdout; only rank 0 prints) is byte-identical to the plain launch, that rank 0 alone printed the
one console report and wrote the one merged JSON report (schema-valid, nothing else left next to
it), and the finding's kind, names, ``file:line`` and ``ranks``.

Every launch imports torch three times (launcher + two ranks) on a two-core machine, so the
launches of all selected tests are queued once, on the module's first test, and run four at a
time (plain and checked of a sample side by side); each test then collects its own pair. Every
launch gets a free port and a 120 s limit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_scripts"
SCHEMA = json.loads((ROOT / "gradcheck_cli" / "schemas" / "report.schema.json").read_text())
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
for _key in ("PYTHONSAFEPATH", "TORCH_DISTRIBUTED_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
    ENV.pop(_key, None)  # DETAIL segfaults in the DDP constructor on some CPU builds
TIMEOUT = 120.0  # seconds, per launch
CONCURRENCY = 4  # launches at once (each: 3 processes); 2 and 8 are slower on two cores
DDP_REDUCTION = "Expected to have finished reduction"
TEARDOWN_ABORT = "terminate called without an active exception"
UNUSED_NO_FIND = SAMPLES / "ddp_unused_no_find.py"


def _gloo_available() -> bool:
    dist = getattr(torch, "distributed", None)
    return bool(dist is not None and dist.is_available() and dist.is_gloo_available())


pytestmark = [
    pytest.mark.skipif(
        not _gloo_available(), reason="torch.distributed with the gloo backend is not available"
    ),
    pytest.mark.slow,  # many subprocesses: `pytest -m 'not slow'` skips them
]


@dataclass
class Expectation:
    script: Path
    nproc: int
    kind: str | None  # None: clean
    names: list[str]
    exit_code: int
    bug_line: int | None
    ranks: list[int] = field(default_factory=list)

    @property
    def rel(self) -> str:
        return str(self.script.relative_to(ROOT))


def _expectation(path: Path) -> Expectation | None:
    text = path.read_text()
    launch = re.search(r"^# gradcheck-launch: torchrun (\d+)$", text, re.M)
    if not launch:
        return None
    expect = re.search(r"^# gradcheck-expect: (.+)$", text, re.M)
    exit_code = re.search(r"^# gradcheck-exit: (\d+)$", text, re.M)
    assert expect and exit_code, f"{path.name} lacks its gradcheck-expect/gradcheck-exit header"
    nproc = int(launch.group(1))
    words = expect.group(1).split()
    bug_lines = [
        i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith("# <- BUG")
    ]
    if words == ["clean"]:
        assert not bug_lines
        return Expectation(path, nproc, None, [], int(exit_code.group(1)), None)
    assert len(bug_lines) == 1, f"{path.name} must mark exactly one line with '# <- BUG'"
    ranks = re.search(r"^# gradcheck-ranks: (.+)$", text, re.M)
    return Expectation(
        path,
        nproc,
        words[0],
        words[1:],
        int(exit_code.group(1)),
        bug_lines[0],
        [int(r) for r in ranks.group(1).split()] if ranks else list(range(nproc)),
    )


EXPECTATIONS = [
    e
    for p in sorted([*SAMPLES.glob("ddp_*.py"), *SAMPLES.glob("fsdp_*.py")])
    if (e := _expectation(p))
]


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (all bound at once, so they differ; then released)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@dataclass
class Launch:
    cmd: list[str]
    future: Future[int]
    out: Path
    err: Path

    def result(self) -> subprocess.CompletedProcess[str]:
        try:
            code = self.future.result()
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"timed out after {TIMEOUT:.0f} s: {' '.join(self.cmd)}\n"
                + self.err.read_text(errors="replace")[-4000:]
            )
        return subprocess.CompletedProcess(
            self.cmd,
            code,
            self.out.read_text(errors="replace"),
            self.err.read_text(errors="replace"),
        )


@dataclass
class Pair:
    plain: Launch
    checked: Launch
    report_dir: Path
    report: Path


def _run(cmd: list[str], out: Path, err: Path, report_dir: Path | None) -> int:
    """Run one launch (``{port}`` in ``cmd`` becomes a free port) with output to files.

    Files, not pipes: nobody reads a launch's output until its test runs. A launch whose rank
    died in torch's own teardown (``terminate called without an active exception``, SIGABRT
    after the script finished; seen about once in 50 loaded launches, plain ones too) is retried
    once on a fresh port.
    """
    for attempt in range(2):
        if report_dir is not None:
            shutil.rmtree(report_dir, ignore_errors=True)
            report_dir.mkdir()
        port = str(_free_ports(1)[0])
        argv = [a.replace("{port}", port) for a in cmd]
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=ENV, stdout=fo, stderr=fe, start_new_session=True
            )
            try:
                code = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its ranks
                proc.wait()
                raise
        if code == 0 or attempt or TEARDOWN_ABORT not in err.read_text(errors="replace"):
            return code
    raise AssertionError("unreachable")


def _submit(
    pool: ThreadPoolExecutor,
    cmd: list[str],
    directory: Path,
    name: str,
    report_dir: Path | None = None,
) -> Launch:
    out, err = directory / f"{name}.stdout", directory / f"{name}.stderr"
    return Launch(cmd, pool.submit(_run, cmd, out, err, report_dir), out, err)


@pytest.fixture(scope="module")
def launches(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Queue the plain and the checked launch of every selected DDP sample, CONCURRENCY at once."""
    selected: set[Path] = set()
    for item in request.session.items:
        if item.module is not request.module:
            continue
        if hasattr(item, "callspec") and "exp" in item.callspec.params:
            selected.add(item.callspec.params["exp"].script)
        elif item.name == "test_ddp_reduction_crash_names_the_parameters":
            selected.add(UNUSED_NO_FIND)
    pairs: dict[Path, Pair] = {}
    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        for exp in EXPECTATIONS:
            if exp.script not in selected:
                continue
            work = tmp_path_factory.mktemp(exp.script.stem)
            report_dir = work / "report"
            report = report_dir / "report.json"
            run = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nproc_per_node={exp.nproc}",
                "--master_port={port}",
            ]
            plain = _submit(pool, [*run, exp.rel], work, "plain")
            checked = _submit(
                pool,
                [*run, "-m", "gradcheck_cli", "run", "--json", str(report), exp.rel],
                work,
                "checked",
                report_dir,
            )
            pairs[exp.script] = Pair(plain, checked, report_dir, report)
        yield pairs


def _near(lines: list[str], anchor: str, window: int, *needles: str) -> bool:
    """Some line within ``window`` lines after a line containing ``anchor`` has every needle."""
    for i, line in enumerate(lines):
        if anchor in line and any(
            all(n in later for n in needles) for later in lines[i : i + window]
        ):
            return True
    return False


def test_ddp_samples_found() -> None:
    names = {e.script.name for e in EXPECTATIONS}
    assert {
        "ddp_correct.py",
        "ddp_detach.py",
        "ddp_rank_divergent.py",
        "ddp_unused_no_find.py",
        "fsdp_detach.py",
    } <= names


@pytest.mark.parametrize("exp", EXPECTATIONS, ids=[e.script.stem for e in EXPECTATIONS])
def test_ddp_sample(exp: Expectation, launches: dict[Path, Pair]) -> None:
    pair = launches[exp.script]
    plain, checked = pair.plain.result(), pair.checked.result()
    rel = exp.rel

    assert checked.returncode == exp.exit_code, checked.stderr[-6000:]
    assert checked.stdout == plain.stdout, (
        "rank 0's stdout must be byte-identical to plain torchrun"
    )
    assert not re.search(r'File "[^"]*gradcheck_cli', checked.stderr), (
        "our frames leaked into a traceback"
    )
    headers = re.findall(
        r"^gradcheck: (?:no gradient problems|\d+ findings?) in ", checked.stderr, re.M
    )
    assert len(headers) == 1, "rank 0 alone prints the one merged console report"

    assert sorted(os.listdir(pair.report_dir)) == ["report.json"], (
        "exactly one merged JSON report, and no per-rank leftovers next to it"
    )
    report = json.loads(pair.report.read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["format"] == 1
    assert report["script"]["path"] == rel
    assert report["script"]["exit_code"] == plain.returncode
    assert report["summary"]["backward_calls"] >= 1
    assert not report["internal_errors"], report["internal_errors"]

    problems = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    if exp.kind is None:
        assert problems == [], checked.stderr
        assert "no gradient problems" in checked.stderr
        return
    assert len(problems) == 1, [(f["kind"], f["site"], f.get("ranks")) for f in problems]
    finding = problems[0]
    assert finding["severity"] == "error"
    assert finding["kind"] == exp.kind
    assert sorted(finding["parameters"]) == sorted(exp.names)
    assert not any(
        p.startswith(("module.", "model.module.")) or "_fsdp" in p or "_orig_mod" in p
        for p in finding["parameters"]
    )
    assert finding["site"]["file"] == rel
    assert finding["site"]["line"] == exp.bug_line
    assert "# <- BUG" in finding["site"]["code"]
    assert finding["message"] and finding["hint"] and finding["id"].startswith("GC")
    assert finding.get("ranks") == exp.ranks, "the ranks the finding occurred on"
    assert f"{rel}:{exp.bug_line}" in checked.stderr, "the console report must point at the line"


def test_ddp_reduction_crash_names_the_parameters(launches: dict[Path, Pair]) -> None:
    """DDP's own message lists parameter indices only; gradcheck's note on it names them."""
    pair = launches[UNUSED_NO_FIND]
    plain, checked = pair.plain.result(), pair.checked.result()

    assert plain.returncode == 1
    assert DDP_REDUCTION in plain.stderr
    assert DDP_REDUCTION in checked.stderr
    assert _near(checked.stderr.splitlines(), DDP_REDUCTION, 40, "gradcheck", "model.unused"), (
        checked.stderr[-6000:]
    )
    report = json.loads(pair.report.read_text())
    error = report["script"]["error"]
    assert error is not None and error["type"] == "RuntimeError"
    assert DDP_REDUCTION in error["message"]
