"""DP-SGD-style training with per-sample gradients from ``torch.func``.

``vmap(grad(loss_one))`` computes one gradient per example through ``functional_call``; each is
clipped, the mean is written into ``p.grad`` by hand and the optimizer steps. An ordinary
``loss.backward()`` step follows. There is no bug: gradcheck stays out of the transforms and
reports nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss_one(params, x, y):
        out = functional_call(model, params, (x.unsqueeze(0),))
        return nn.functional.mse_loss(out, y.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
    for step in range(4):
        x, y = torch.randn(32, 4), torch.randn(32, 1)
        params = {k: v.detach() for k, v in model.named_parameters()}
        grads = per_sample(params, x, y)
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()]).norm(dim=0)
        scale = (1.0 / (norms + 1e-6)).clamp(max=1.0)
        for name, p in model.named_parameters():
            g = grads[name] * scale.view(-1, *([1] * (grads[name].dim() - 1)))
            p.grad = g.mean(0) + 0.01 * torch.randn_like(p)
        optimizer.step()

        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
