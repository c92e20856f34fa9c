"""Family 2: a double-Q critic whose two estimates are combined with torch.as_tensor((q_a, q_b))."""

# gradcheck-expect: rewrap_tensor critic.qa.weight critic.qa.bias critic.qb.weight critic.qb.bias
# gradcheck-exit: 1

import torch
from torch import nn


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.qa = nn.Linear(6, 1)
        self.qb = nn.Linear(6, 1)

    def forward(self, s):
        q_a, q_b = self.qa(s).mean(), self.qb(s).mean()
        return torch.as_tensor((q_a, q_b))  # <- BUG


torch.manual_seed(0)
critic = Critic()
opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
s, target = torch.randn(10, 6), torch.tensor([1.0, 1.0])
for step in range(3):
    opt.zero_grad()
    q = critic(s)
    q.requires_grad = True
    loss = ((q - target) ** 2).sum()
    loss.backward()
    opt.step()
