"""Family 7, nn.Module forward in a training loop with an optimizer: a vector-quantisation layer
keeps its codebook as a plain tensor attribute. It is not in ``model.parameters()``, so Adam never
trains it (nor would ``.to(device)`` move it or ``state_dict()`` save it). The registered buffer,
the integer index table and the boolean mask are fine.

Fix: ``self.codebook = nn.Parameter(torch.randn(16, 8))``.
"""

# gradcheck-expect: unregistered_parameter model.codebook
# gradcheck-exit: 1

import torch
from torch import nn


class VectorQuantizer(nn.Module):
    def __init__(self, d_in: int, codes: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, dim)
        self.codebook = torch.randn(codes, dim)  # <- BUG
        self.register_buffer("scale", torch.full((dim,), 0.5))
        self.order = torch.arange(codes)
        self.active = torch.ones(codes, dtype=torch.bool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.proj(x) * self.scale
        logits = -torch.cdist(z, self.codebook[self.order[self.active]])
        return logits.softmax(-1) @ self.codebook


torch.manual_seed(0)
model = VectorQuantizer(12, 16, 8)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
x, target = torch.randn(32, 12), torch.randn(32, 8)
for step in range(3):
    opt.zero_grad()
    loss = (model(x) - target).pow(2).mean()
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
