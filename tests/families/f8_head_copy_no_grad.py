"""Family 8: a new head initialised from the first rows of the old one under no_grad, swapped
in after the optimizer was built."""

# gradcheck-expect: stale_optimizer model.head.weight model.head.bias
# gradcheck-exit: 1

import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(6, 6), nn.Linear(6, 10)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def shrink_head(old, n):
    new = nn.Linear(old.in_features, n)
    with torch.no_grad():
        new.weight.copy_(old.weight[:n])
        new.bias.copy_(old.bias[:n])
    return new


torch.manual_seed(0)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model.head = shrink_head(model.head, 4)  # <- BUG
x, y = torch.randn(12, 6), torch.randint(0, 4, (12,))
for step in range(3):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
