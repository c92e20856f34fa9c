"""Meta-learns a sine-regression initialisation with MAML through ``torch.func.functional_call``.

Each task adapts fast weights ``w - lr * g`` in an inner loop, with ``g`` from
``torch.autograd.grad`` on the support loss; the query loss of the adapted weights is
backpropagated into the meta-parameters. Even steps use second-order MAML
(``create_graph=True``), odd steps first-order MAML. There is no bug: the fast weights get their
gradients from ``autograd.grad`` (never in ``.grad``) and every meta-parameter learns.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn
from torch.func import functional_call


def sample_task(n=10):
    amp, phase = torch.rand(1) * 4 + 0.1, torch.rand(1) * 3.1
    x = torch.rand(2 * n, 1) * 10 - 5
    y = amp * torch.sin(x + phase)
    return x[:n], y[:n], x[n:], y[n:]


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))
    meta_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    inner_lr = 0.01

    for step in range(4):
        second_order = step % 2 == 0
        meta_opt.zero_grad()
        total = 0.0
        for _ in range(2):
            xs, ys, xq, yq = sample_task()
            fast = dict(model.named_parameters())
            for _ in range(2):
                inner = nn.functional.mse_loss(functional_call(model, fast, (xs,)), ys)
                grads = torch.autograd.grad(inner, list(fast.values()), create_graph=second_order)
                fast = {k: w - inner_lr * g for (k, w), g in zip(fast.items(), grads)}
            query = nn.functional.mse_loss(functional_call(model, fast, (xq,)), yq)
            query.backward()
            total += query.item()
        meta_opt.step()
        print(f"step {step}: meta loss {total:.4f}")


if __name__ == "__main__":
    main()
