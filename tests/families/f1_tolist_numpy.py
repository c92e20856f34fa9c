"""Family 1: per-sample weights computed by the weighting net go through .tolist() and NumPy."""

# gradcheck-expect: python_scalar_roundtrip weigher.weight weigher.bias
# gradcheck-exit: 1

import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(5, 1)
weigher = nn.Linear(5, 1)
opt = torch.optim.SGD([*model.parameters(), *weigher.parameters()], lr=0.1)
x, y = torch.randn(24, 5), torch.randn(24, 1)
for step in range(3):
    opt.zero_grad()
    w = torch.sigmoid(weigher(x)).squeeze(1).tolist()  # <- BUG
    w = torch.from_numpy(np.array(w, dtype=np.float32)).unsqueeze(1)
    loss = (w * (model(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
