"""Family 10, plain script: the config expects ``W`` to learn (``--expect W``), but ``W`` was cast
after ``requires_grad=True`` and is a non-leaf, so its gradient goes to the nameless tensor it was
made from and nothing updates ``W``. The config name is accepted and the finding says why.
"""

# gradcheck-expect: non_leaf W
# gradcheck-exit: 1
# gradcheck-args: --expect W --expect b

import torch

torch.manual_seed(0)
W = torch.randn(5, 2, requires_grad=True).to(torch.float64)  # <- BUG
b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
opt = torch.optim.SGD([b], lr=0.1)
x, y = torch.randn(30, 5, dtype=torch.float64), torch.randn(30, 2, dtype=torch.float64)
for step in range(3):
    opt.zero_grad()
    loss = (x @ W + b - y).pow(2).mean()
    loss.backward(retain_graph=True)
    opt.step()
    print(f"step {step} loss {loss.item():.4f}")
