"""Distributed runs (torchrun / DDP): each rank checks itself, rank 0 writes the one report.

Under ``torchrun ... -m gradcheck_cli run train.py`` every rank is its own instrumented process.
When its script ends, a rank writes its report (JSON, format 1) into a directory shared by the
run; rank 0 waits for the others, merges them — a finding says on which ranks it occurred — and
is the only one to print or write the final reports, so nothing interleaves. A finding present on
some ranks only (a parameter that got no gradient on rank 1 but did on rank 0, which DDP's
all-reduce then hides) becomes a ``rank_divergent`` finding naming the ranks and the local cause.
Files, not the process group: the script may have destroyed it (or crashed) by then.

Under FSDP2 a rank sees only its shard of a parameter's gradient: each part also lists the
sharded names, and the merge counts such a gradient as all-zero only when it is zero on every
rank's shard (its norm, in ``steps[].checked``, is then the one of the whole gradient).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace

from gradcheck_cli.model import Checked, Finding, Report, Step
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


def write_part(
    report: Report,
    rank: int,
    directory: str,
    sharded: list[str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Hand this rank's report (and its sharded names) to rank 0 and wait until rank 0 has taken
    it (it deletes the file).

    Waiting matters when this rank exits non-zero: torchrun then terminates the others at once,
    and rank 0 must not be killed halfway through writing the merged report.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"rank{rank}.json")
    part = {"sharded": sharded or [], "report": json.loads(to_json(report))}
    write_atomic(path, json.dumps(part))
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass
class Part:
    """One rank's report and the names of its sharded (FSDP2) parameters."""

    report: Report
    sharded: list[str] = field(default_factory=list)


def collect(
    directory: str, world: int, started: float, timeout: float = _WAIT_SECONDS
) -> dict[int, Part]:
    """The other ranks' parts (written after ``started``), waiting up to ``timeout`` seconds."""
    found: dict[int, Part] = {}
    deadline = time.monotonic() + timeout
    while True:
        for rank in range(1, world):
            path = os.path.join(directory, f"rank{rank}.json")
            if rank in found or not os.path.exists(path) or os.path.getmtime(path) < started:
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
                found[rank] = Part(Report.from_dict(data["report"]), list(data["sharded"]))
            except (OSError, ValueError, KeyError):
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


def merge(parts: dict[int, Part], world: int) -> Report:
    """One report from every rank's: findings merged by (kind, site) with the ranks they were on."""
    reports = _merge_shards(parts)
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
    for rank in sorted(reports):
        code = reports[rank].script.exit_code
        if rank and code and code != base.script.exit_code:  # rank 0's is the report's own
            notes.append(f"on rank {rank} the script exited with status {code}")
    notes.append(f"merged from {len(reports)} of {world} ranks")
    return replace(
        base,
        findings=findings,
        notes=notes,
        internal_errors=[e for r in sorted(reports) for e in reports[r].internal_errors],
        steps_seen=max(r.steps_seen for r in reports.values()),
        steps_checked=max(r.steps_checked for r in reports.values()),
    )


def _merge_shards(parts: dict[int, Part]) -> dict[int, Report]:
    """The ranks' reports, with a sharded gradient zero on some shards only no longer zero.

    Each rank read its own shard: a sharded parameter is all-zero when every rank said so. Its
    norm per checked backward becomes the norm of the whole gradient (from the shards' norms).
    """
    sharded = {n for p in parts.values() for n in p.sharded}
    reports = {rank: p.report for rank, p in parts.items()}
    if not sharded:
        return reports
    zero_on = [
        {n for f in r.findings if f.grad_state == "zero" for n in f.parameters}
        for r in reports.values()
    ]
    partly = {
        n for n in sharded if any(n in z for z in zero_on) and not all(n in z for z in zero_on)
    }
    merged: dict[int, Report] = {}
    for rank, r in reports.items():
        findings = []
        for f in r.findings:
            if f.grad_state == "zero" and partly & set(f.parameters):
                kept = [n for n in f.parameters if n not in partly]
                if not kept:
                    continue
                f = replace(f, parameters=kept)
            findings.append(f)
        merged[rank] = replace(r, findings=findings)
    merged[0] = replace(merged[0], steps=_whole_norms(reports, sharded))
    return merged


def _whole_norms(reports: dict[int, Report], sharded: set[str]) -> list[Step]:
    """Rank 0's step records with each sharded tensor's state and norm from all its shards."""
    shards: dict[tuple[int, str], list[Checked]] = {}
    for r in reports.values():
        for step in r.steps:
            for c in step.checked:
                if c.name in sharded:
                    shards.setdefault((step.index, c.name), []).append(c)
    steps = []
    for step in reports[0].steps:
        checked = []
        for c in step.checked:
            parts = shards.get((step.index, c.name))
            if parts and c.state in ("ok", "zero"):
                norms = [p.norm for p in parts if p.norm is not None]
                norm = math.hypot(*norms) if len(norms) == len(parts) else None
                zero = all(p.state == "zero" for p in parts)
                c = replace(c, state="zero" if zero else "ok", norm=norm)
            checked.append(c)
        steps.append(replace(step, checked=checked))
    return steps
