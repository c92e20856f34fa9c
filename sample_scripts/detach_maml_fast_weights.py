"""MAML through ``torch.func.functional_call`` on sine regression.

Bug: the fast weights start from ``.detach()``-ed copies of the meta-parameters, so the query
loss's gradient stops at the fast weights and no meta-parameter gets a gradient: the
meta-optimizer never moves the initialisation. Fix: start from ``dict(model.named_parameters())``.
"""

# gradcheck-expect: detach model.0.weight model.0.bias model.2.weight model.2.bias
# gradcheck-exit: 1

import torch
from torch import nn
from torch.func import functional_call


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))
    meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    for step in range(4):
        amp = torch.rand(1) * 4 + 0.1
        x = torch.rand(20, 1) * 10 - 5
        y = amp * torch.sin(x)
        xs, ys, xq, yq = x[:10], y[:10], x[10:], y[10:]
        fast = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}  # <- BUG
        inner = nn.functional.mse_loss(functional_call(model, fast, (xs,)), ys)
        grads = torch.autograd.grad(inner, list(fast.values()), create_graph=True)
        fast = {k: w - 0.01 * g for (k, w), g in zip(fast.items(), grads)}
        query = nn.functional.mse_loss(functional_call(model, fast, (xq,)), yq)
        meta_opt.zero_grad()
        query.backward()
        meta_opt.step()
        print(f"step {step}: query loss {query.item():.4f}")


if __name__ == "__main__":
    main()
