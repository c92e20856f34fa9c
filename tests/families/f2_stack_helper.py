"""Family 2: a helper in another file stacks torch.tensor(v) copies of the outputs; the
contrastive head keeps None gradients while the rest of the model trains."""

# gradcheck-expect: rewrap_tensor model.proj.weight model.proj.bias
# gradcheck-exit: 1
# gradcheck-cause: helpers.py

import torch
from torch import nn
import torch.nn.functional as F

from helpers import collect_scores


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(8, 8)
        self.cls = nn.Linear(8, 2)
        self.proj = nn.Linear(8, 1)


torch.manual_seed(0)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(12, 8), torch.randint(0, 2, (12,))
for step in range(3):
    opt.zero_grad()
    h = torch.relu(model.enc(x))
    aux = collect_scores([model.proj(h[i]).squeeze() for i in range(4)])
    loss = F.cross_entropy(model.cls(h), y) + 0.1 * aux.pow(2).mean()
    loss.backward()
    opt.step()
