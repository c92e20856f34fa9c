"""Per-step time on CUDA of three transformer sizes: plain, in the default window, after it, every
step checked, and anomaly mode (medians of 3 rounds, each a median of 10-20 synchronized steps).

"analysis/check" is the session's own timing of its checked backward calls; on CUDA it includes
waiting for the backward's kernels, since its first copy to the host synchronizes.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

sys.path.insert(0, ".")
import gradcheck_cli
from gradcheck_cli.config import Config

SIZES = {
    "small d64": (64, 256, 4, 16),
    "medium d256": (256, 1024, 16, 64),
    "large d1024": (1024, 4096, 32, 256),
}


def build(d: int, ff: int, batch: int, seq: int) -> Callable[[], None]:
    torch.manual_seed(0)
    emb = nn.Embedding(1000, d).cuda()
    layer = nn.TransformerEncoderLayer(d, 8, ff, batch_first=True)
    enc = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).cuda()
    head = nn.Linear(d, 1000).cuda()
    opt = torch.optim.AdamW([*emb.parameters(), *enc.parameters(), *head.parameters()], lr=1e-4)
    tok = torch.randint(0, 1000, (batch, seq), device="cuda")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = head(enc(emb(tok)))
        nn.functional.cross_entropy(logits.reshape(-1, 1000), tok.reshape(-1)).backward()
        opt.step()

    return step


def timed(step: Callable[[], None], n: int) -> float:
    out = []
    for _ in range(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1e3


def main() -> None:
    for name, size in SIZES.items():
        step = build(*size)
        for _ in range(10):
            step()
        rows: dict[str, list[float]] = {}
        for _ in range(3):
            rows.setdefault("plain", []).append(timed(step, 20))
            with gradcheck_cli.watch(Config()):
                rows.setdefault("window", []).append(timed(step, 10))
                step()
                rows.setdefault("after", []).append(timed(step, 20))
            with gradcheck_cli.watch(Config(steps="all")) as s:
                rows.setdefault("all", []).append(timed(step, 10))
                rows.setdefault("analysis", []).append(s.analysis_seconds / s.steps_checked * 1e3)
            with torch.autograd.set_detect_anomaly(True):
                rows.setdefault("anomaly", []).append(timed(step, 10))
        med = {k: statistics.median(v) for k, v in rows.items()}
        p = med["plain"]
        print(
            f"{name}: plain {p:.2f} ms | window {med['window'] / p:.2f}x | "
            f"after {med['after'] / p:.2f}x | all {med['all'] / p:.2f}x | "
            f"anomaly {med['anomaly'] / p:.2f}x | analysis/check {med['analysis']:.2f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
