"""Family 8: a weight re-assigned as a new nn.Parameter built from `.data` after the optimizer
was built (a "rescaling" step): the optimizer keeps the old tensor."""

# gradcheck-expect: stale_optimizer model.fc.weight
# gradcheck-exit: 1

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Module()
model.fc = nn.Linear(5, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model.fc.weight = nn.Parameter(model.fc.weight.data * 0.5)  # <- BUG
x, y = torch.randn(10, 5), torch.randn(10, 2)
for step in range(3):
    opt.zero_grad()
    ((model.fc(x) - y) ** 2).mean().backward()
    opt.step()
