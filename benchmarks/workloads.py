"""The models and training steps that ``bench.py`` times.

They live in their own module on purpose: gradcheck treats the script it was started with
(``sys.argv[0]``, here ``bench.py``) as a launcher, not as user code, so a training step defined
there would look like library code to it. A step defined here is user code, as the training loop
of a real script is: gradcheck stamps its lines, reads its locals for names, and so on.

Each :class:`Workload` owns its model, optimizer and a fixed batch (no data loading is timed);
``step()`` is one full training step: zero_grad, forward, loss, backward, optimizer step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class Workload:
    key: str
    title: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], None]
    graph_nodes: int = 0  # autograd nodes a backward visits (filled by count_nodes)
    leaf_params: int = 0


class MLP(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (32, 64, 64, 10)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerLM(nn.Module):
    """Embedding + ``nn.TransformerEncoder`` (causal) + LM head."""

    def __init__(
        self, vocab: int, d_model: int, nhead: int, ff: int, layers: int, seq: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(seq, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, ff, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        h = self.encoder(h, mask=self.mask, is_causal=True)
        return self.head(self.norm(h))


class ChainGraph(nn.Module):
    """``n_params`` small parameters, each through ``chain`` elementwise ops, summed into a loss.

    With the defaults: 1000 leaves and about 100k autograd nodes (99 ops + a sum per parameter).
    """

    def __init__(self, n_params: int = 1000, size: int = 4, chain: int = 99) -> None:
        super().__init__()
        self.params = nn.ParameterList(
            nn.Parameter(torch.randn(size) * 0.1) for _ in range(n_params)
        )
        self.rounds = chain // 3

    def forward(self) -> torch.Tensor:
        sums = []
        for p in self.params:
            h = p
            for _ in range(self.rounds):
                h = h * 0.999
                h = h + 0.001
                h = torch.tanh(h)
            sums.append(h.sum())
        return torch.stack(sums).sum()


def mlp(batch: int = 32) -> Workload:
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 32)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return Workload("mlp", "tiny MLP 32-64-64-10, batch 32", model, optimizer, step)


def transformer(
    key: str,
    title: str,
    *,
    d_model: int,
    nhead: int,
    ff: int,
    layers: int,
    batch: int,
    seq: int,
    vocab: int = 1000,
) -> Workload:
    model = TransformerLM(vocab, d_model, nhead, ff, layers, seq)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, vocab, (batch, seq + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    return Workload(key, title, model, optimizer, step)


def small_transformer() -> Workload:
    return transformer(
        "small_tf",
        "transformer 6L d64 h4 ff256, batch 4 x seq 16",
        d_model=64,
        nhead=4,
        ff=256,
        layers=6,
        batch=4,
        seq=16,
    )


def medium_transformer() -> Workload:
    return transformer(
        "medium_tf",
        "transformer 6L d256 h8 ff1024, batch 16 x seq 64",
        d_model=256,
        nhead=8,
        ff=1024,
        layers=6,
        batch=16,
        seq=64,
    )


def chain_graph(n_params: int = 1000, chain: int = 99) -> Workload:
    model = ChainGraph(n_params, chain=chain)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model()
        loss.backward()
        optimizer.step()

    return Workload(
        "graph_100k",
        f"{n_params} leaves x {chain + 1}-op chains (~100k nodes)",
        model,
        optimizer,
        step,
    )


def count_nodes(w: Workload) -> None:
    """Fill ``graph_nodes``/``leaf_params`` by walking one forward's graph (not timed)."""
    model = w.model
    if isinstance(model, ChainGraph):
        loss = model()
    elif isinstance(model, MLP):
        loss = model(torch.randn(2, 32)).sum()
    else:
        assert isinstance(model, TransformerLM)
        loss = model(torch.randint(0, 10, (1, model.pos.shape[0]))).sum()
    # Keep the node objects alive: a freed wrapper's id() can be reused by the next one.
    seen: dict[int, Any] = {}
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(n for n, _ in node.next_functions)
    w.graph_nodes = len(seen)
    w.leaf_params = sum(1 for _ in model.parameters())


BUILDERS: dict[str, Callable[[], Workload]] = {
    "mlp": mlp,
    "small_tf": small_transformer,
    "medium_tf": medium_transformer,
    "graph_100k": chain_graph,
}
