"""Family 7, plain script, nothing requires grad in the bug: a sinusoidal positional table kept as
a plain tensor attribute works on this CPU, but ``model.to("cuda")`` would leave it behind and
``state_dict()`` does not save it. The model is trained by hand over ``model.parameters()``.

Fix: ``self.register_buffer("pe", _sinusoids(max_len, dim))``.
"""

# gradcheck-expect: unregistered_parameter model.pe
# gradcheck-exit: 1

import math

import torch
from torch import nn


def _sinusoids(n: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class Tagger(nn.Module):
    def __init__(self, vocab: int, dim: int, max_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pe = _sinusoids(max_len, dim)  # <- BUG
        self.out = nn.Linear(dim, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pe[: tokens.shape[1]]
        return self.out(torch.tanh(h))


torch.manual_seed(0)
model = Tagger(50, 16, 32)
tokens, tags = torch.randint(0, 50, (8, 12)), torch.randint(0, 5, (8, 12))
for step in range(3):
    loss = nn.functional.cross_entropy(model(tokens).flatten(0, 1), tags.flatten())
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    print(f"step {step} loss {loss.item():.4f}")
