"""Family 3: `model.backbone.requires_grad_(False)` left in after AdamW was built over all of
model.parameters()."""

# gradcheck-expect: requires_grad_false model.backbone.0.weight model.backbone.0.bias
# gradcheck-exit: 1

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(10, 10), nn.GELU())
        self.head = nn.Linear(10, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


torch.manual_seed(0)
model = Net()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
model.backbone.requires_grad_(False)  # <- BUG
x, y = torch.randn(8, 10), torch.randn(8, 1)
for step in range(3):
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
