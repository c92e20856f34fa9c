"""Overhead of gradcheck on a CPU training step, against a plain run and anomaly mode.

Run from the repository root::

    python benchmarks/bench.py            # full run (several minutes)
    python benchmarks/bench.py --quick    # fewer repetitions and steps (under ~2 minutes)
    python benchmarks/bench.py --json out.json --profile

One training step (zero_grad, forward, loss, backward, optimizer step; see ``workloads.py``) is
timed on four models under these conditions:

* ``plain``: no gradcheck;
* ``default``: ``watch(Config())``; steps inside its check window and, when the window ends, the
  steps after it, both taken from the same session;
* ``after window (steps=1)``: only when the default window is ``"all"`` (it never ends): a session
  with ``Config(steps=1)``, timed after its one checked step;
* ``all``: ``watch(Config(steps="all"))``, every step checked (the same as ``default`` when the
  default window is ``"all"``: it is then measured once);
* ``anomaly``: ``torch.autograd.set_detect_anomaly(True)``, no gradcheck.

A *block* enters one condition once (a watch session, or anomaly mode), runs its window, warms up
and times ``k`` steps with ``time.perf_counter``; a *round* runs one block of every condition, the
order rotated each round, with a block of plain steps before each of them: the reference is
sampled next to every condition, at every time of the run.

Each ratio to plain is paired in time: a block's lower quartile (25th percentile of its
samples) over that of the plain blocks run just before and just after it; a row's ratio is the
median of its blocks' ratios. On a shared machine interference only ever adds time, and it comes
in spells: on the 2-core machine this was written on, a plain tiny-MLP block ran at 0.52 ms per
step and the next at 0.95 ms, a plain medium-transformer step at ~680 ms for some seconds, then
at ~940 ms, with no change in the process (CPU time moves with wall time: it is the core's speed,
not stolen time). Pooled medians then compare whichever spells each condition's blocks fell in
(checked steps measured "faster" than plain ones, 0.84x); a block and its neighbours mostly share
one. Pooled medians and quartiles are printed beside the ratio.

On Linux the script runs itself again with glibc's trim and mmap thresholds pinned
(``PINNED_MALLOC``; ``--system-malloc`` leaves them): by default glibc hands the memory a step
freed back to the kernel, and the next step faults it in again — ~1,500 page faults per plain step
of the medium transformer, ~500 per step inside a watch session, whose objects alive at the top of
the heap stop the trim. That made steps under gradcheck ~5% *faster* than plain ones, with nothing
of gradcheck running; pinned, both fault nothing.

Diagnosis per backward is the time gradcheck spends inside each checked ``backward()`` outside
autograd's own work (the graph walk, naming, classification, the zero-gradient check), as the
session measures it (``Session.analysis_seconds``), averaged per checked backward of each
``steps='all'`` block; the row is the median of those block means. The checked step's whole
overhead, forward instrumentation included, is printed beside it (checked step minus a step under
an active session that is not checked) and is what the "cheaper than anomaly mode" targets compare.

Memory is measured in separate, untimed sessions (tracemalloc slows Python code down):
``tracemalloc`` peak of Python allocations above the level before the session, and
``resource.getrusage`` max RSS, which only grows, so it is read after each condition in turn.
The flat-memory test runs many tiny-MLP steps in one session and compares the traced Python heap
at 10% and at 100% of the steps.

The process always exits 0: this reports, it does not gate.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import workloads  # noqa: E402

import gradcheck_cli  # noqa: E402
from gradcheck_cli.config import Config  # noqa: E402

MB = 1024 * 1024
MODELS = ("mlp", "small_tf", "medium_tf", "graph_100k")
DIAGNOSIS_MODEL = "graph_100k"
DIAGNOSIS_LIMIT_MS = 150.0
FLAT_LIMIT_BYTES = 1 * MB
# What a checked step may cost, as a multiple of a plain step, in the check window and with every
# step checked (issue #18: checked steps are what the Python API, the pytest plugin, notebooks,
# `--steps all` and short scripts pay on every call).
CHECKED_LIMITS = {"mlp": 2.0, "small_tf": 1.3, "medium_tf": 1.03, "graph_100k": 1.15}


# -- plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reps:
    rounds: int  # interleaved repetitions
    k: int  # timed steps per block
    warm: int  # untimed steps per block, after the window
    mem_steps: int  # steps per memory session (0: no memory sessions for this model)
    anomaly_k: int | None = None  # timed steps of an anomaly-mode block (None: k), no warm-up
    # Run the default session with its whole window each round. False (--quick, ~100k-node graph,
    # where a window of checked steps costs a minute): "after the window" comes from a
    # Config(steps=1) session instead, and the default rows are not measured.
    default_window: bool = True


@dataclass(frozen=True)
class Plan:
    reps: dict[str, Reps]
    flat_default_steps: int
    flat_all_steps: int
    initial_warmup_s: float = 1.0  # plain steps before the first round, per model


FULL = Plan(
    reps={
        "mlp": Reps(rounds=40, k=40, warm=5, mem_steps=5),
        "small_tf": Reps(rounds=20, k=10, warm=2, mem_steps=3),
        # (warm-up >= 2 everywhere: the `all` row times the steps after its two awake checks,
        # which the window row has; an anomaly-mode step of this graph takes ~15 s)
        "medium_tf": Reps(rounds=8, k=3, warm=2, mem_steps=1, anomaly_k=2),
        "graph_100k": Reps(rounds=5, k=2, warm=2, mem_steps=1, anomaly_k=1),
    },
    flat_default_steps=10_000,
    flat_all_steps=2_000,
)
QUICK = Plan(
    reps={
        "mlp": Reps(rounds=5, k=15, warm=2, mem_steps=3),
        "small_tf": Reps(rounds=4, k=4, warm=1, mem_steps=2),
        "medium_tf": Reps(rounds=2, k=1, warm=1, mem_steps=1),
        "graph_100k": Reps(rounds=1, k=1, warm=1, mem_steps=0, default_window=False),
    },
    flat_default_steps=500,
    flat_all_steps=150,
    initial_warmup_s=0.5,
)


# -- conditions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    key: str
    config: Config | None = None  # None: no gradcheck
    anomaly: bool = False
    window: int = 0  # checked steps at the start of the session (an int window), run every block
    window_row: str | None = None  # the row the window steps are timed into (None: not timed)
    row: str = ""  # the row of the k timed steps after the window and the warm-up
    expect_checked: str = ""  # "none" | "window" | "all": a sanity check on the session

    @contextmanager
    def active(self) -> Iterator[Any]:
        if self.anomaly:
            with torch.autograd.set_detect_anomaly(True):
                yield None
        elif self.config is not None:
            with gradcheck_cli.watch(self.config) as session:
                yield session
        else:
            yield None


ROW_LABELS = {
    "plain": "plain",
    "default_window": "default: steps in window",
    "default_after": "default: steps after window",
    "after_window": "after window (steps=1)",
    "all": "steps='all' (every step checked)",
    "anomaly": "set_detect_anomaly(True)",
}


def conditions(
    default_steps: int | str, default_window: bool = True
) -> tuple[list[Condition], dict[str, str]]:
    """The conditions to run, and aliases (a row measured under another row's name)."""
    plain = Condition("plain", row="plain")
    anomaly = Condition("anomaly", anomaly=True, row="anomaly")
    checked_all = Condition("all", Config(steps="all"), row="all", expect_checked="all")
    after = Condition(
        "after", Config(steps=1), window=1, row="after_window", expect_checked="window"
    )
    if default_steps == "all":  # the default never ends its window: it is checked_all
        default = Condition("default", Config(), row="default_window", expect_checked="all")
        return [plain, default, after, anomaly], {"all": "default_window"}
    if not default_window:
        return [plain, after, checked_all, anomaly], {}
    default = Condition(
        "default",
        Config(),
        window=int(default_steps),
        window_row="default_window",
        row="default_after",
        expect_checked="window",
    )
    return [plain, default, checked_all, anomaly], {}


def default_row(default_steps: int | str) -> str:
    """The row the "default <= Nx" targets use: the steady state of a long run."""
    return "default_window" if default_steps == "all" else "default_after"


# -- results -------------------------------------------------------------------------------------


def quantile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Row:
    samples: list[float] = field(default_factory=list)
    # Each block's lower quartile over that of the plain blocks run just before and after it
    # (see the module docstring); empty for plain itself.
    paired: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        """The lower quartile: what ratios to plain compare (see the module docstring)."""
        return quantile(self.samples, 0.25)

    def quantile(self, q: float) -> float:
        return quantile(self.samples, q)


@dataclass
class Memory:
    py_peak_bytes: int
    max_rss_bytes: int


@dataclass
class ModelResult:
    key: str
    title: str
    graph_nodes: int
    leaf_params: int
    rows: dict[str, Row] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    sanity: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def row(self, name: str) -> Row | None:
        row = self.rows.get(self.aliases.get(name, name))
        return row if row is not None and row.samples else None

    def ratio(self, name: str) -> float | None:
        row, plain = self.row(name), self.row("plain")
        if row is None or plain is None:
            return None
        return statistics.median(row.paired) if row.paired else row.low / plain.low

    def median_ratio(self, name: str) -> float | None:
        row, plain = self.row(name), self.row("plain")
        return None if row is None or plain is None else row.median / plain.median

    def after_row(self) -> str:
        """Steps in an active session after its window: the default's if measured."""
        return "default_after" if self.row("default_after") is not None else "after_window"

    def diagnosis_s(self) -> float | None:
        """Analysis time per checked backward (the session's own measure), median of blocks."""
        row = self.rows.get("analysis")
        return row.median if row is not None and row.samples else None

    def checked_overhead_s(self) -> float | None:
        """A checked step minus an unchecked step under an active session (forward included)."""
        checked, unchecked = self.row("all"), self.row(self.after_row())
        return None if checked is None or unchecked is None else checked.low - unchecked.low


@dataclass
class FlatResult:
    config: str
    steps: int
    at_10pct_bytes: int
    at_end_bytes: int
    growth_bytes: int
    seconds: float
    top_growth: list[str]
    error: str | None = None


@dataclass
class Target:
    name: str
    value: str
    limit: str
    passed: bool | None  # None: skipped (its model was not run)


# -- timing --------------------------------------------------------------------------------------


def timed(step: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def run_block(
    w: workloads.Workload, cond: Condition, reps: Reps, result: ModelResult
) -> dict[str, list[float]]:
    """One block; returns its samples by row."""
    block: dict[str, list[float]] = {}
    gc.collect()
    with cond.active() as session:
        for _ in range(cond.window):
            t = timed(w.step)
            if cond.window_row is not None:
                block.setdefault(cond.window_row, []).append(t)
        warm, k = reps.warm, reps.k
        if cond.anomaly and reps.anomaly_k is not None:
            warm, k = 0, reps.anomaly_k
        for _ in range(warm):
            w.step()
        block[cond.row] = [timed(w.step) for _ in range(k)]
    for name, samples in block.items():
        result.rows.setdefault(name, Row()).samples.extend(samples)
    if session is not None:
        _check_session(session, cond, cond.window + reps.warm + reps.k, result)
        if cond.expect_checked == "all" and session.steps_checked:
            per_check = session.analysis_seconds / session.steps_checked
            result.rows.setdefault("analysis", Row()).samples.append(per_check)
    return block


def pair_with_plain(timeline: list[dict[str, list[float]]], result: ModelResult) -> None:
    """Each non-plain block's lower quartile over that of the plain blocks just before and
    just after it in time, into its row's ``paired`` ratios."""
    plain_at = [i for i, block in enumerate(timeline) if "plain" in block]
    for i, block in enumerate(timeline):
        if "plain" in block:
            continue
        before = [j for j in plain_at if j < i][-1:]
        after = [j for j in plain_at if j > i][:1]
        ref = [t for j in before + after for t in timeline[j]["plain"]]
        if not ref:
            continue
        for name, samples in block.items():
            if samples:
                ratio = quantile(samples, 0.25) / quantile(ref, 0.25)
                result.rows.setdefault(name, Row()).paired.append(ratio)


def _check_session(session: Any, cond: Condition, steps: int, result: ModelResult) -> None:
    """The session saw and checked what the condition means (else the numbers mean nothing)."""
    seen = getattr(session, "backward_calls", None)
    checked = getattr(session, "steps_checked", None)
    want = steps if cond.expect_checked == "all" else cond.window
    problems = []
    if seen is not None and seen != steps:
        problems.append(f"{seen} backward calls seen, {steps} expected")
    if checked is not None and checked != want:
        problems.append(f"{checked} steps checked, {want} expected")
    internal = getattr(session, "internal_errors", None)
    if internal:
        problems.append(f"internal errors: {internal[:2]}")
    for p in problems:
        note = f"{cond.key}: {p}"
        if note not in result.sanity:
            result.sanity.append(note)


def bench_model(
    key: str, plan: Plan, default_steps: int | str, log: Callable[[str], None]
) -> ModelResult:
    t_start = time.perf_counter()
    torch.manual_seed(0)
    w = workloads.BUILDERS[key]()
    workloads.count_nodes(w)
    reps = plan.reps[key]
    conds, aliases = conditions(default_steps, reps.default_window)
    result = ModelResult(key, w.title, w.graph_nodes, w.leaf_params, aliases=dict(aliases))
    log(
        f"[{key}] {w.title}: {w.graph_nodes} graph nodes, {w.leaf_params} parameters; "
        f"{reps.rounds} rounds x {len(conds)} conditions ({', '.join(c.key for c in conds)}), "
        f"k={reps.k}, warm-up={reps.warm}"
    )
    deadline = time.perf_counter() + plan.initial_warmup_s
    w.step()
    while time.perf_counter() < deadline:
        w.step()
    broken: set[str] = set()
    plain = next(c for c in conds if c.key == "plain")
    others = [c for c in conds if c is not plain]
    timeline: list[dict[str, list[float]]] = []
    for r in range(reps.rounds):
        order: list[Condition] = []
        for cond in others[r % len(others) :] + others[: r % len(others)]:
            order += [plain, cond]  # (the reference next to every condition)
        if r == reps.rounds - 1:
            order.append(plain)  # (and after the last one)
        for cond in order:
            if cond.key in broken:
                continue
            try:
                timeline.append(run_block(w, cond, reps, result))
            except Exception as e:
                broken.add(cond.key)
                result.errors.append(f"{cond.key}: {type(e).__name__}: {e}")
                log(f"  ! {cond.key} failed: {type(e).__name__}: {e}")
                traceback.print_exc()
        lows = ", ".join(
            f"{name}={row.low * 1e3:.1f}ms" for name, row in result.rows.items() if row.samples
        )
        log(f"  round {r + 1}/{reps.rounds}, lower quartiles so far: {lows}")
    pair_with_plain(timeline, result)
    for cond in conds:
        if cond.key in broken or not reps.mem_steps:
            continue
        try:
            measure_memory(w, cond, reps, result)
        except Exception as e:
            result.errors.append(f"memory {cond.key}: {type(e).__name__}: {e}")
    result.wall_s = time.perf_counter() - t_start
    return result


# -- memory --------------------------------------------------------------------------------------


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # kB on Linux


def measure_memory(w: workloads.Workload, cond: Condition, reps: Reps, result: ModelResult) -> None:
    """tracemalloc peak per row (above the traced level before it), then max RSS so far.

    tracemalloc is on from the session's start, except with a window, where it starts for the
    window's last step (a window of checked steps under tracemalloc would take minutes on the big
    graph): the in-window peak is that one checked step's.
    """
    gc.collect()
    if not cond.window:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with cond.active():
            for i in range(cond.window):
                if i == cond.window - 1:
                    gc.collect()
                    tracemalloc.start()
                    base = tracemalloc.get_traced_memory()[0]
                w.step()
            if cond.window:
                if cond.window_row is not None:
                    peak = tracemalloc.get_traced_memory()[1] - base
                    result.memory[cond.window_row] = Memory(peak, max_rss_bytes())
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            for _ in range(reps.mem_steps):
                w.step()
            peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    result.memory[cond.row] = Memory(peak, max_rss_bytes())


def flat_memory(config: Config, label: str, steps: int, log: Callable[[str], None]) -> FlatResult:
    """Run ``steps`` tiny-MLP steps in one session; traced Python heap at 10% vs at the end."""
    torch.manual_seed(0)
    w = workloads.mlp()
    for _ in range(20):
        w.step()
    mark = max(1, steps // 10)
    gc.collect()
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        with gradcheck_cli.watch(config):
            for i in range(1, steps + 1):
                w.step()
                if i == mark:
                    gc.collect()
                    first = tracemalloc.take_snapshot()
                    at_mark = tracemalloc.get_traced_memory()[0]
            gc.collect()
            last = tracemalloc.take_snapshot()
            at_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - t0
    stats = last.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).compare_to(
        first.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]), "lineno"
    )
    top = [
        f"{s.size_diff / 1024:+.1f} KiB {s.count_diff:+d} blocks  "
        f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}"
        for s in stats[:3]
        if s.size_diff
    ]
    log(
        f"  flat memory {label}: {steps} steps in {seconds:.1f}s; traced heap "
        f"{at_mark / MB:.2f} MB at step {mark}, {at_end / MB:.2f} MB at step {steps}"
    )
    return FlatResult(label, steps, at_mark, at_end, at_end - at_mark, seconds, top)


def _short(path: str) -> str:
    for marker in ("gradcheck_cli", "torch", "benchmarks"):
        i = path.rfind(os.sep + marker + os.sep)
        if i >= 0:
            return path[i + 1 :]
    return path


# -- profile -------------------------------------------------------------------------------------


def profile_checked_step(key: str, top: int = 15) -> str:
    """cProfile of one checked step (after one warm-up step in the same session)."""
    torch.manual_seed(0)
    w = workloads.BUILDERS[key]()
    w.step()
    profiler = cProfile.Profile()
    with gradcheck_cli.watch(Config(steps="all")):
        w.step()
        profiler.enable()
        w.step()
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats("gradcheck_cli", top)
    out.write(f"\n  by own time (tottime), top {top // 2} in gradcheck_cli:\n")
    stats.sort_stats("tottime").print_stats("gradcheck_cli", top // 2)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    keep = [
        line
        for line in lines
        if not line.lstrip().startswith(("Ordered by", "List reduced", "{built-in"))
    ]
    return "\n".join(keep).replace(os.path.dirname(HERE) + os.sep, "")


# -- report --------------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def print_table(results: list[ModelResult], default_steps: int | str) -> None:
    head = (
        f"{'model':<11} {'condition':<33} {'median ms':>10} {'p25..p75 ms':>19} {'n':>4} "
        f"{'x plain':>8} {'py peak MB':>10} {'maxRSS MB':>9}"
    )
    print(head)
    print("-" * len(head))
    order = ["plain", "default_window", "default_after", "after_window", "all", "anomaly"]
    for res in results:
        for name in order:
            row = res.row(name)
            if row is None:
                if name in res.rows or name in (
                    "plain",
                    "all",
                    "anomaly",
                    default_row(default_steps),
                ):
                    print(f"{res.key:<11} {ROW_LABELS[name]:<33} {'(not measured)':>14}")
                continue
            real = res.aliases.get(name, name)
            label = ROW_LABELS[name] + ("*" if real != name else "")
            ratio = res.ratio(name)
            mem = res.memory.get(real)
            spread = f"{fmt_ms(row.quantile(0.25))}..{fmt_ms(row.quantile(0.75))}"
            print(
                f"{res.key:<11} {label:<33} {fmt_ms(row.median):>10} {spread:>19} "
                f"{len(row.samples):>4} {ratio:>7.2f}x "
                f"{(f'{mem.py_peak_bytes / MB:.2f}' if mem else '-'):>10} "
                f"{(f'{mem.max_rss_bytes / MB:.0f}' if mem else '-'):>9}"
            )
        diag, overhead = res.diagnosis_s(), res.checked_overhead_s()
        if diag is not None:
            print(f"{res.key:<11} {'diagnosis per backward (analysis)':<33} {fmt_ms(diag):>10}")
        if overhead is not None:
            print(f"{res.key:<11} {'checked step - unchecked step':<33} {fmt_ms(overhead):>10}")
        print()
    if any(res.aliases for res in results):
        print(
            "* default window is 'all': every step is checked, so steps='all' is the default row "
            "(measured once)."
        )


def in_window_row(res: ModelResult) -> tuple[str, bool]:
    """The row of steps inside the default check window, and whether it stands in for it: when
    the window was not run (``--quick`` on the ~100k-node graph), every-step-checked steps, which do
    the same work."""
    if res.row("default_window") is not None:
        return "default_window", False
    return "all", True


def print_checked_table(results: list[ModelResult]) -> None:
    """The issue #18 table: checked steps as a multiple of plain, against their target."""
    head = (
        f"{'model':<11} {'plain ms':>9} {'in window':>10} {'every step':>11} "
        f"{'anomaly mode':>13} {'target':>8}"
    )
    print(head)
    print("-" * len(head))

    def x(res: ModelResult, name: str) -> str:
        ratio = res.ratio(name)
        return "-" if ratio is None else f"{ratio:.2f}x"

    for res in results:
        plain = res.row("plain")
        window, stand_in = in_window_row(res)
        print(
            f"{res.key:<11} {(fmt_ms(plain.low) if plain else '-'):>9} "
            f"{x(res, window) + ('*' if stand_in else ''):>10} {x(res, 'all'):>11} "
            f"{x(res, 'anomaly'):>13} {'<= ' + format(CHECKED_LIMITS[res.key], '.2f') + 'x':>8}"
        )
    if any(in_window_row(res)[1] for res in results):
        print("* the window itself was not run (--quick): every-step-checked steps stand in for it")


def evaluate(
    results: dict[str, ModelResult], flats: list[FlatResult], default_steps: int | str
) -> list[Target]:
    """The targets; one whose model was not run (``--models``) is skipped, not failed."""
    targets: list[Target] = []
    drow = default_row(default_steps)
    dlabel = (
        "window 'all': every step checked"
        if default_steps == "all"
        else f"steps after its {default_steps}-step window"
    )

    def skipped(name: str, model: str, limit: str) -> bool:
        if model in results:
            return False
        targets.append(Target(name, "not run", limit, None))
        return True

    def ratio_target(name: str, model: str, row: str, limit: float) -> None:
        if skipped(name, model, f"<= {limit:.2f}x"):
            return
        ratio = results[model].ratio(row)
        value = f"{ratio:.2f}x" if ratio is not None else "no data"
        ok = ratio is not None and ratio <= limit
        targets.append(Target(name, value, f"<= {limit:.2f}x", ok))

    for model in MODELS:
        limit = CHECKED_LIMITS[model]
        if model in results:
            window, stand_in = in_window_row(results[model])
            label = "in the check window" + (
                " (every step checked, standing in)" if stand_in else ""
            )
        else:
            window, label = "default_window", "in the check window"
        ratio_target(f"checked steps {label} on {model}", model, window, limit)
        if window != "all":
            ratio_target(f"checked steps (every step) on {model}", model, "all", limit)
    ratio_target(f"default ({dlabel}) on small_tf", "small_tf", drow, 1.30)
    ratio_target(f"default ({dlabel}) on medium_tf", "medium_tf", drow, 1.05)
    for model in MODELS:
        arow = results[model].after_row() if model in results else "after_window"
        which = "default" if arow == "default_after" else "steps=1"
        ratio_target(f"steps after the check window ({which}) on {model}", model, arow, 1.05)
    for model in MODELS:
        name = f"checked step < anomaly mode on {model}"
        if skipped(name, model, "checked < anomaly"):
            continue
        checked, anomaly = results[model].row("all"), results[model].row("anomaly")
        if checked is None or anomaly is None:
            targets.append(Target(name, "no data", "checked < anomaly", False))
            continue
        value = f"{fmt_ms(checked.low)} ms vs {fmt_ms(anomaly.low)} ms"
        targets.append(Target(name, value, "checked < anomaly", checked.low < anomaly.low))
    name = f"diagnosis per backward on {DIAGNOSIS_MODEL}"
    limit = f"<= {DIAGNOSIS_LIMIT_MS:.0f} ms"
    if not skipped(name, DIAGNOSIS_MODEL, limit):
        diag = results[DIAGNOSIS_MODEL].diagnosis_s()
        value = f"{diag * 1e3:.0f} ms" if diag is not None else "no data"
        ok = diag is not None and diag * 1e3 <= DIAGNOSIS_LIMIT_MS
        targets.append(Target(name, value, limit, ok))
    for flat in flats:
        ok = flat.error is None and flat.growth_bytes < FLAT_LIMIT_BYTES
        value = (
            f"{flat.growth_bytes / 1024:+.1f} KiB" if flat.error is None else f"error: {flat.error}"
        )
        name = f"Python heap flat over {flat.steps} tiny-MLP steps, {flat.config}"
        targets.append(Target(name, value, "< 1 MB growth (10% -> 100%)", ok))
    return targets


# -- main ----------------------------------------------------------------------------------------


def git_state(path: str) -> str | None:
    """``<short commit>`` of the checkout holding ``path``, ``+dirty`` if gradcheck_cli/ differs."""
    try:
        head = subprocess.run(
            ["git", "-C", path, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", path, "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def environment(threads: int) -> dict[str, Any]:
    path = os.path.dirname(os.path.abspath(gradcheck_cli.__file__))
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gradcheck": getattr(gradcheck_cli, "__version__", "?"),
        "gradcheck_path": path,
        "gradcheck_git": git_state(path),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "default_steps": Config().steps,
    }


# glibc reads these when the process starts: bench.py runs itself again with them set.
PINNED_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(16 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}


def malloc_pinned() -> bool:
    return all(os.environ.get(k) == v for k, v in PINNED_MALLOC.items())


def pin_malloc(argv: list[str]) -> None:
    """Keep freed memory in the process, so that a step's allocations never fault pages in
    again (see the module docstring); re-executes this script unless already pinned."""
    if malloc_pinned():
        return
    sys.stdout.flush()
    script = [sys.executable, os.path.abspath(__file__), *argv]
    os.execve(sys.executable, script, {**os.environ, **PINNED_MALLOC})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and steps")
    parser.add_argument("--json", metavar="PATH", help="save the results as JSON")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile one checked step per model (top 15 gradcheck_cli functions)",
    )
    parser.add_argument("--no-flat", action="store_true", help="skip the flat-memory test")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's trim and mmap thresholds as they are (see the module docstring)",
    )
    args = parser.parse_args(argv)
    if not args.system_malloc and sys.platform.startswith("linux"):
        pin_malloc(sys.argv[1:] if argv is None else argv)

    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL
    models = [m for m in args.models.split(",") if m]
    env = environment(args.threads)
    default_steps = env["default_steps"]
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    def log(message: str) -> None:
        print(message, flush=True)

    log(
        f"gradcheck bench ({'quick' if args.quick else 'full'}): torch {env['torch']}, "
        f"Python {env['python']}, torch.set_num_threads({args.threads}), "
        f"{env['cpu_count']} CPUs, load average {load_start[0]:.2f} {load_start[1]:.2f} "
        f"{load_start[2]:.2f}"
    )
    log(
        f"gradcheck {env['gradcheck']} from {env['gradcheck_path']} "
        f"(git {env['gradcheck_git'] or 'unknown'}); Config().steps = {default_steps!r}"
    )
    env["malloc"] = "pinned" if malloc_pinned() else "system"
    pinned = " ".join(f"{k}={v}" for k, v in PINNED_MALLOC.items())
    log(f"malloc: {pinned if malloc_pinned() else 'the system thresholds (--system-malloc)'}")

    results: dict[str, ModelResult] = {}
    for key in models:
        if key not in workloads.BUILDERS:
            log(f"unknown model {key!r} (known: {', '.join(MODELS)})")
            continue
        try:
            results[key] = bench_model(key, plan, default_steps, log)
        except Exception as e:
            log(f"[{key}] failed: {type(e).__name__}: {e}")
            traceback.print_exc()

    flats: list[FlatResult] = []
    if not args.no_flat:
        log("flat memory (tiny MLP, one session each, tracemalloc on)")
        for config, label, steps in (
            (Config(), f"default (steps={default_steps!r})", plan.flat_default_steps),
            (Config(steps="all"), "steps='all'", plan.flat_all_steps),
        ):
            try:
                flats.append(flat_memory(config, label, steps, log))
            except Exception as e:
                flats.append(FlatResult(label, steps, 0, 0, 0, 0.0, [], f"{type(e).__name__}: {e}"))

    profiles: dict[str, str] = {}
    if args.profile:
        for key in models:
            try:
                profiles[key] = profile_checked_step(key)
            except Exception as e:
                profiles[key] = f"failed: {type(e).__name__}: {e}"

    load_end = os.getloadavg()
    elapsed = time.perf_counter() - t_start
    print()
    print(
        f"== results: per-step time; x plain paired with the plain blocks beside each block (torch threads {args.threads}; "
        f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; {elapsed:.0f}s) =="
    )
    ordered = [results[k] for k in models if k in results]
    for res in ordered:
        print(
            f"{res.key}: {res.title}; {res.graph_nodes} autograd nodes, {res.leaf_params} "
            f"parameters; {res.wall_s:.0f}s"
        )
    print()
    print_table(ordered, default_steps)
    print("== checked steps, x plain (targets: issue #18) ==")
    print_checked_table(ordered)
    print()
    print(
        "py peak MB: tracemalloc peak of Python allocations during the condition's memory "
        "session, above the level before it; maxRSS MB: getrusage max RSS of the process after "
        "that session (it never decreases: read it as a running maximum)."
    )
    for res in ordered:
        for note in res.errors:
            print(f"error [{res.key}] {note}")
        for note in res.sanity:
            print(f"sanity [{res.key}] {note}")
    if flats:
        print()
        print("== flat memory (traced Python heap, tiny MLP, one watch() session) ==")
        for flat in flats:
            if flat.error:
                print(f"{flat.config}: error: {flat.error}")
                continue
            print(
                f"{flat.config}: {flat.steps} steps ({flat.seconds:.1f}s with tracemalloc): "
                f"{flat.at_10pct_bytes / MB:.3f} MB at 10% -> {flat.at_end_bytes / MB:.3f} MB at "
                f"100% ({flat.growth_bytes / 1024:+.1f} KiB)"
            )
            for line in flat.top_growth:
                print(f"    {line}")
    for key, text in profiles.items():
        print()
        print(f"== cProfile: one checked step of {key} (steps='all'), gradcheck_cli only ==")
        print(text)

    targets = evaluate(results, flats, default_steps)
    print()
    print("== targets ==")
    for t in targets:
        verdict = "SKIP" if t.passed is None else "PASS" if t.passed else "FAIL"
        print(f"{verdict}  {t.name}: {t.value} (target {t.limit})")
    passed = sum(t.passed is True for t in targets)
    failed = sum(t.passed is False for t in targets)
    skipped = len(targets) - passed - failed
    if skipped:
        print(f"({skipped} targets skipped: their model was not run)")
    print(f"targets: {passed} passed, {failed} failed")

    if args.json:
        payload = {
            "mode": "quick" if args.quick else "full",
            "environment": env,
            "load_average": {"start": load_start, "end": load_end},
            "elapsed_s": elapsed,
            "plan": {
                "reps": {k: asdict(v) for k, v in plan.reps.items()},
                "flat_default_steps": plan.flat_default_steps,
                "flat_all_steps": plan.flat_all_steps,
            },
            "models": {
                res.key: {
                    "title": res.title,
                    "graph_nodes": res.graph_nodes,
                    "leaf_params": res.leaf_params,
                    "wall_s": res.wall_s,
                    "aliases": res.aliases,
                    "rows": {
                        name: {
                            "median_s": row.median,
                            "p25_s": row.quantile(0.25),
                            "p75_s": row.quantile(0.75),
                            "n": len(row.samples),
                            "ratio_to_plain": res.ratio(name),  # (paired in time)
                            "ratio_of_medians": res.median_ratio(name),
                            "samples_s": row.samples,
                        }
                        for name, row in res.rows.items()
                        if row.samples
                    },
                    "memory": {name: asdict(m) for name, m in res.memory.items()},
                    "diagnosis_s": res.diagnosis_s(),
                    "checked_overhead_s": res.checked_overhead_s(),
                    "errors": res.errors,
                    "sanity": res.sanity,
                }
                for res in ordered
            },
            "flat_memory": [asdict(f) for f in flats],
            "profiles": profiles,
            "targets": [asdict(t) for t in targets],
            "summary": {"passed": passed, "failed": failed, "skipped": skipped},
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=str)
        print(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception:  # a report, not a gate: never a non-zero exit
        traceback.print_exc()
        print("targets: 0 passed, 0 failed (the benchmark itself failed)")
    sys.exit(0)
