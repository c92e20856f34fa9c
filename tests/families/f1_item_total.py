"""Family 1: a weighted sum of losses rebuilt from .item() values, then re-wrapped with
requires_grad=True so that backward() runs. The model never gets a gradient."""

# gradcheck-expect: python_scalar_roundtrip model.weight model.bias
# gradcheck-exit: 1

import torch
from torch import nn

torch.manual_seed(0)
x, y = torch.randn(32, 4), torch.randn(32, 1)
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
weights = {"mse": 1.0, "l1": 0.5}
for step in range(3):
    opt.zero_grad()
    out = model(x)
    losses = {"mse": ((out - y) ** 2).mean(), "l1": (out - y).abs().mean()}
    total = 0.0
    for k, l in losses.items():
        total += weights[k] * l.item()  # <- BUG
    loss = torch.tensor(total, requires_grad=True)
    loss.backward()
    opt.step()
