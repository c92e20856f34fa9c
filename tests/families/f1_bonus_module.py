"""Family 1: an nn.Module whose confidence head only reaches the loss through .item()."""

# gradcheck-expect: python_scalar_roundtrip model.conf.weight model.conf.bias
# gradcheck-exit: 1

import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.cls = nn.Linear(16, 3)
        self.conf = nn.Linear(16, 1)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.cls(h), self.conf(h)


torch.manual_seed(0)
model = Net()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
mask = torch.ones(())
for step in range(3):
    opt.zero_grad()
    logits, score = model(x)
    bonus = score.max().item() * mask  # <- BUG
    loss = F.cross_entropy(logits, y) + 0.1 * bonus
    loss.backward()
    opt.step()
