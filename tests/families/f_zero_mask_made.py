"""Issue 14 (8): a padding mask built with the wrong comparison is zero everywhere; it is
applied one line later, inside the loss. The finding is at the line that applies it, names the
line that made the mask as related, and says the mask is zero everywhere."""

# gradcheck-expect: zero_grad_flow model.weight model.bias
# gradcheck-exit: 1

import torch
from torch import nn

PAD = -1
torch.manual_seed(0)
model = nn.Linear(6, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(20, 6), torch.randn(20)
lengths = torch.randint(1, 5, (20,))
for step in range(3):
    keep = (lengths == PAD).float()  # <- MADE
    err = (model(x).squeeze(1) - y) ** 2
    loss = (err * keep).sum() / keep.numel()  # <- BUG
    opt.zero_grad()
    loss.backward()
    opt.step()
