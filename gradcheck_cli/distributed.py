"""Distributed runs (torchrun / DDP): each rank checks itself, rank 0 writes the one report.

Under ``torchrun ... -m gradcheck_cli run train.py`` every rank is its own instrumented process.
When its script ends, a rank writes its report (JSON, format 1) into a directory shared by the
run; rank 0 waits for the others, merges them — a finding says on which ranks it occurred — and
is the only one to print or write the final reports, so nothing interleaves. A finding present on
some ranks only (a parameter that got no gradient on rank 1 but did on rank 0, which DDP's
all-reduce then hides) becomes a ``rank_divergent`` finding naming the ranks and the local cause.
Files, not the process group: the script may have destroyed it (or crashed) by then.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import replace

from gradcheck_cli.model import Finding, Report
from gradcheck_cli.report import to_json, write_atomic
from gradcheck_cli.rules import rule_for

_WAIT_SECONDS = 120.0


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (torchrun, torch.distributed.launch)."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def parts_dir(json_path: str | None) -> str:
    """Where the ranks of this run meet: next to the JSON report, else a run-specific temp dir."""
    if json_path:
        return json_path + ".ranks"
    run = "-".join(
        os.environ.get(k, "")
        for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")
    )
    return os.path.join(tempfile.gettempdir(), f"gradcheck-{run}".replace(os.sep, "_"))


def write_part(report: Report, rank: int, directory: str, timeout: float = 60.0) -> None:
    """Hand this rank's report to rank 0 and wait until rank 0 has taken it (it deletes the file).

    Waiting matters when this rank exits non-zero: torchrun then terminates the others at once,
    and rank 0 must not be killed halfway through writing the merged report.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"rank{rank}.json")
    write_atomic(path, to_json(report))
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)


def collect(
    directory: str, world: int, started: float, timeout: float = _WAIT_SECONDS
) -> dict[int, Report]:
    """The other ranks' reports (written after ``started``), waiting up to ``timeout`` seconds."""
    found: dict[int, Report] = {}
    deadline = time.monotonic() + timeout
    while True:
        for rank in range(1, world):
            path = os.path.join(directory, f"rank{rank}.json")
            if rank in found or not os.path.exists(path) or os.path.getmtime(path) < started:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    found[rank] = Report.from_dict(json.load(f))
            except (OSError, ValueError):
                continue  # not complete yet (it is written atomically, but be safe)
        if len(found) == world - 1 or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def cleanup(directory: str, world: int) -> None:
    for rank in range(world):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, f"rank{rank}.json"))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def merge(reports: dict[int, Report], world: int) -> Report:
    """One report from every rank's: findings merged by (kind, site) with the ranks they were on."""
    base = reports[0]
    merged: dict[tuple[object, ...], Finding] = {}
    for rank in sorted(reports):
        for f in reports[rank].findings:
            key = f.key
            if key not in merged:
                merged[key] = replace(
                    f, parameters=list(f.parameters), steps=list(f.steps), ranks=[]
                )
            m = merged[key]
            m.ranks.append(rank)
            m.parameters += [p for p in f.parameters if p not in m.parameters]
            m.steps += [s for s in f.steps if s not in m.steps]
    everyone = list(range(world))
    findings: list[Finding] = []
    for f in merged.values():
        if (
            f.ranks != everyone
            and len(reports) == world
            and f.grad_state in ("none", "zero")
            and f.severity != "info"
        ):
            rule = rule_for("rank_divergent")
            on = ", ".join(str(r) for r in f.ranks)
            f = replace(
                f,
                id=rule.id,
                kind="rank_divergent",
                message=f"only on rank {on}: {f.kind}: {f.message}. The other ranks computed a gradient, "
                "so DDP's all-reduce hands these ranks an averaged one and hides the bug",
                hint=rule.hint,
            )
        findings.append(f)
    notes = list(base.notes)
    missing = [r for r in range(1, world) if r not in reports]
    if missing:
        notes.append(
            f"no report arrived from rank(s) {', '.join(map(str, missing))}: they crashed or timed out"
        )
    notes.append(f"merged from {len(reports)} of {world} ranks")
    return replace(
        base,
        findings=findings,
        notes=notes,
        internal_errors=[e for r in sorted(reports) for e in reports[r].internal_errors],
        steps_seen=max(r.steps_seen for r in reports.values()),
        steps_checked=max(r.steps_checked for r in reports.values()),
    )
