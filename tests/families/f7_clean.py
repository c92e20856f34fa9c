"""Family 7 (and issue 14), clean: state the module keeps on purpose. A registered buffer, integer
and boolean tensors, an output cached in ``forward``, tensors in a plain list that the user
updates by hand under ``no_grad``, and layers in a plain list that each have their own optimizer
(as in Forward-Forward) are all trained or used as intended.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn


class Mixer(nn.Module):
    def __init__(self, dim: int, n: int) -> None:
        super().__init__()
        self.register_buffer("running", torch.zeros(dim))
        self.perm = torch.randperm(dim)
        self.keep = torch.ones(dim, dtype=torch.bool)
        self.scales = [torch.ones(dim, requires_grad=True) for _ in range(n)]
        self.stages = [nn.Linear(dim, dim) for _ in range(n)]
        self.opts = [torch.optim.SGD(s.parameters(), lr=0.05) for s in self.stages]
        self.last = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage, scale in zip(self.stages, self.scales, strict=True):
            x = torch.tanh(stage(x[:, self.perm] * self.keep)) * scale
        self.running = 0.9 * self.running + 0.1 * x.detach().mean(0)
        self.last = x.detach()
        return x


torch.manual_seed(0)
model = Mixer(8, 2)
x, y = torch.randn(32, 8), torch.randn(32, 8)
for step in range(3):
    for opt in model.opts:
        opt.zero_grad()
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    for opt in model.opts:
        opt.step()
    with torch.no_grad():
        for s in model.scales:
            s -= 0.05 * s.grad
            s.grad = None
    print(f"step {step} loss {loss.item():.4f}")
