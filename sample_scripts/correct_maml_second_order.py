"""Second-order MAML with plain tensors: a two-layer regressor written with ``w1, b1, w2, b2``.

The inner loop takes ``torch.autograd.grad(support_loss, weights, create_graph=True)`` and builds
fast weights ``w - lr * g``; the query loss of the fast weights is backpropagated into the
meta-parameters through the inner update (second order). There is no bug.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch


def forward(weights, x):
    w1, b1, w2, b2 = weights
    return torch.tanh(x @ w1 + b1) @ w2 + b2


def main():
    torch.manual_seed(0)
    w1 = (torch.randn(1, 32) * 0.5).requires_grad_()
    b1 = torch.zeros(32, requires_grad=True)
    w2 = (torch.randn(32, 1) * 0.2).requires_grad_()
    b2 = torch.zeros(1, requires_grad=True)
    meta = [w1, b1, w2, b2]
    meta_opt = torch.optim.Adam(meta, lr=1e-3)

    for step in range(4):
        amp = torch.rand(1) * 4 + 0.1
        x = torch.rand(20, 1) * 10 - 5
        y = amp * torch.sin(x)
        xs, ys, xq, yq = x[:10], y[:10], x[10:], y[10:]
        fast = meta
        for _ in range(2):
            inner = (forward(fast, xs) - ys).pow(2).mean()
            grads = torch.autograd.grad(inner, fast, create_graph=True)
            fast = [w - 0.01 * g for w, g in zip(fast, grads)]
        query = (forward(fast, xq) - yq).pow(2).mean()
        meta_opt.zero_grad()
        query.backward()
        meta_opt.step()
        print(f"step {step}: query loss {query.item():.4f}")


if __name__ == "__main__":
    main()
