"""Family 5, the cause in a helper of the user's project: ``init_linear`` (``userlib_f5``) casts
the weight after ``requires_grad=True``. The training loop updates the tuple of tensors by hand
and skips what has no gradient: ``W`` never learns.

Fix: create the weight with ``dtype=dtype, requires_grad=True`` in one call.
"""

# gradcheck-expect: non_leaf W
# gradcheck-exit: 1

import torch
from userlib_f5 import init_linear

torch.manual_seed(0)
W, b = init_linear(6, 2, torch.float64)
x, y = torch.randn(40, 6, dtype=torch.float64), torch.randn(40, 2, dtype=torch.float64)
for step in range(3):
    loss = (x @ W + b - y).abs().mean()
    loss.backward()
    with torch.no_grad():
        for t in (W, b):
            if t.grad is not None:
                t.sub_(0.1 * t.grad)
                t.grad.zero_()
    print(f"step {step} loss {loss.item():.4f}")
