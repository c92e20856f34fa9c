"""Family 10, a training loop with an optimizer and a config file (``f10_loop.yaml``) naming the
script-level tensors ``temperature`` (must learn) and ``anchors`` (frozen). The temperature is
detached where the logits are scaled, so Adam never moves it.
"""

# gradcheck-expect: detach temperature
# gradcheck-exit: 1
# gradcheck-args: --config tests/families/f10_loop.yaml

import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)
model = nn.Linear(8, 4)
anchors = torch.randn(4, 4)
temperature = torch.ones((), requires_grad=True)
opt = torch.optim.Adam([*model.parameters(), temperature], lr=1e-2)
x, labels = torch.randn(24, 8), torch.randint(0, 4, (24,))
for step in range(3):
    opt.zero_grad()
    logits = model(x) @ anchors / temperature.detach()  # <- BUG
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
