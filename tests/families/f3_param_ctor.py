"""Family 3: a learnable temperature created with nn.Parameter(..., requires_grad=False); the
config lists it under `expect`, so it must learn."""

# gradcheck-expect: requires_grad_false model.temp
# gradcheck-exit: 1
# gradcheck-args: --expect model.temp

import torch
from torch import nn
import torch.nn.functional as F


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.temp = nn.Parameter(torch.ones(()), requires_grad=False)  # <- BUG

    def forward(self, x):
        return self.fc(x) / self.temp


torch.manual_seed(0)
model = Scaled()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(9, 4), torch.randint(0, 3, (9,))
for step in range(3):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
