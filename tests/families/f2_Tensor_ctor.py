"""Family 2: torch.Tensor(list_of_tensors) in a training loop makes a constant."""

# gradcheck-expect: rewrap_tensor head.weight head.bias
# gradcheck-exit: 1

import torch
from torch import nn

torch.manual_seed(0)
body, head = nn.Linear(3, 3), nn.Linear(3, 1)
opt = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.1)
x = torch.randn(5, 3)
for step in range(3):
    opt.zero_grad()
    feats = body(x)
    preds = torch.Tensor([head(f).squeeze() for f in feats]).requires_grad_()  # <- BUG
    loss = feats.pow(2).mean() + preds.mean()
    loss.backward()
    opt.step()
