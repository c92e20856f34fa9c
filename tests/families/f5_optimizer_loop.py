"""Family 5, a training loop with an optimizer: a functional MLP whose biases Adam trains and whose
weights are updated by hand through a list. ``W_out`` is made with ``/ 4`` after
``requires_grad=True``, so it is a non-leaf: its update reads a None ``.grad`` and skips it, and
the second ``backward()`` raises, because every step reuses the graph of that ``/ 4``.

Fix: ``W_out = (torch.randn(16, 3) / 4).requires_grad_()``.
"""

# gradcheck-expect: non_leaf W_out
# gradcheck-exit: 1

import torch
import torch.nn.functional as F

torch.manual_seed(0)
W_in = torch.randn(10, 16, requires_grad=True)
W_out = torch.randn(16, 3, requires_grad=True) / 4  # <- BUG
b_in = torch.zeros(16, requires_grad=True)
b_out = torch.zeros(3, requires_grad=True)
opt = torch.optim.Adam([b_in, b_out], lr=0.01)
weights = [W_in, W_out]


def forward(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x @ W_in + b_in) @ W_out + b_out


x, labels = torch.randn(50, 10), torch.randint(0, 3, (50,))
for step in range(3):
    opt.zero_grad()
    loss = F.cross_entropy(forward(x), labels)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for w in weights:
            if w.grad is not None:
                w -= 0.01 * w.grad
                w.grad = None
    print(f"step {step} loss {loss.item():.4f}")
