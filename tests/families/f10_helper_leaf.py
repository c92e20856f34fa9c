"""Family 10, the loss built in a helper of the user's project: a learned input perturbation
``delta`` (a script-level tensor, named in the config with ``--expect delta``; the input ``image``
is listed under ``--frozen``) is detached inside ``userlib_f10.attack_loss`` before it reaches
the model: its optimizer never moves it.
"""

# gradcheck-expect: detach delta
# gradcheck-exit: 1
# gradcheck-args: --expect delta --expect model.* --frozen image

import torch
from torch import nn
from userlib_f10 import attack_loss

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
image = torch.randn(8, 12)
labels = torch.randint(0, 3, (8,))
delta = torch.zeros(8, 12, requires_grad=True)
opt = torch.optim.SGD([*model.parameters(), delta], lr=0.05)
for step in range(3):
    opt.zero_grad()
    loss = attack_loss(model, image, labels, delta)
    loss.backward()
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
