"""Family 9, a plain script: a sub-module whose ``forward`` is decorated with
``@torch.no_grad()``, compiled as part of the model and trained by hand.
"""

# gradcheck-expect: no_grad model.embed.proj.weight model.embed.proj.bias
# gradcheck-exit: 1

import os

import torch
from torch import nn
from torch._dynamo.utils import counters


class Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 8)

    @torch.no_grad()  # <- BUG
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


torch.manual_seed(0)
model = nn.Sequential()
model.embed = Embed()
model.out = nn.Linear(8, 2)
fast = torch.compile(model, backend=os.environ.get("GC_COMPILE_BACKEND", "inductor"))
x, y = torch.randn(16, 4), torch.randn(16, 2)
for step in range(3):
    loss = (fast(x) - y).pow(2).mean()
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    print(f"step {step} loss {loss.item():.4f}")
print("graphs", dict(counters["stats"]), "breaks", sum(counters["graph_break"].values()))
