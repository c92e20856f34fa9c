"""Family 3/4: the whole model frozen after the optimizer was built; an EMA copy is refreshed
with state_dict() (whose internals detach) before backward() raises. The freeze is the cause,
not a cut inside state_dict()."""

# gradcheck-expect: requires_grad_false model.0.weight model.0.bias model.2.weight model.2.bias
# gradcheck-exit: 1

import copy

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
ema = copy.deepcopy(model)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for p in model.parameters():
    p.requires_grad = False  # <- BUG
x, y = torch.randn(16, 4), torch.randn(16, 1)
for step in range(3):
    ema.load_state_dict(model.state_dict())
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
