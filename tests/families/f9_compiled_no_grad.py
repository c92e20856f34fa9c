"""Family 9, nn.Module forward compiled with torch.compile (default backend; ``GC_COMPILE_BACKEND``
overrides it where the machine has no C compiler): the encoder runs under ``torch.no_grad()``
inside the compiled ``forward``, so its layer never learns. The script prints torch.compile's own
counters: they must read the same under gradcheck (its hooks add no graph break).

Fix: drop the ``with`` block (or move the frozen part out of the optimizer on purpose).
"""

# gradcheck-expect: no_grad model.encoder.weight model.encoder.bias
# gradcheck-exit: 1

import os

import torch
from torch import nn
from torch._dynamo.utils import counters


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(8, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # <- BUG
            h = torch.relu(self.encoder(x))
        return self.head(h)


torch.manual_seed(0)
model = Regressor()
compiled = torch.compile(model, backend=os.environ.get("GC_COMPILE_BACKEND", "inductor"))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for step in range(3):
    opt.zero_grad()
    loss = nn.functional.mse_loss(compiled(x), y)
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
print("graphs", dict(counters["stats"]), "breaks", sum(counters["graph_break"].values()))
