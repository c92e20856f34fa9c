"""Family 7, a plain tensor attribute that requires grad: the learnable temperature of a
contrastive head is a plain tensor, so it gets a gradient but the optimizer built from
``model.parameters()`` never updates it.

Fix: ``self.log_temp = nn.Parameter(torch.zeros(()))``.
"""

# gradcheck-expect: unregistered_parameter model.log_temp
# gradcheck-exit: 1

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.log_temp = torch.zeros((), requires_grad=True)  # <- BUG

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        za = F.normalize(self.proj(a), dim=-1)
        zb = F.normalize(self.proj(b), dim=-1)
        return za @ zb.t() * self.log_temp.exp()


torch.manual_seed(0)
model = ContrastiveHead(16)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
a = torch.randn(24, 16)
b = a + 0.1 * torch.randn(24, 16)
for step in range(3):
    opt.zero_grad()
    loss = F.cross_entropy(model(a, b), torch.arange(24))
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
