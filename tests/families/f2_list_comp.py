"""Family 2: per-example scores collected in a list and re-wrapped with torch.tensor(...);
requires_grad_() afterwards lets backward() run, and the model's gradients stay None."""

# gradcheck-expect: rewrap_tensor model.0.weight model.0.bias model.2.weight model.2.bias
# gradcheck-exit: 1

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
xs = [torch.randn(4) for _ in range(8)]
target = torch.randn(8)
for step in range(3):
    opt.zero_grad()
    scores = torch.tensor([model(x_i).squeeze() for x_i in xs]).requires_grad_()  # <- BUG
    loss = ((scores - target) ** 2).mean()
    loss.backward()
    opt.step()
