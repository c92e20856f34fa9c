"""Hyperparameter learning with implicit gradients: a learned per-feature weight decay
``log_decay`` for a linear model, updated with a Hessian-vector-product step.

The inner step trains ``w`` on the training loss; the hypergradient solves ``H v = dL_val/dw``
with a few Neumann iterations of Hessian-vector products (``torch.autograd.grad`` with
``create_graph=True`` and ``grad_outputs``), then backpropagates ``-v . d(dL_train/dw)/d lambda``
into ``log_decay``. There is no bug.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch


def main():
    torch.manual_seed(0)
    x_train, x_val = torch.randn(64, 8), torch.randn(64, 8)
    true_w = torch.randn(8, 1)
    y_train = x_train @ true_w + 0.3 * torch.randn(64, 1)
    y_val = x_val @ true_w + 0.3 * torch.randn(64, 1)

    w = (0.1 * torch.randn(8, 1)).requires_grad_()
    log_decay = torch.full((8, 1), -3.0, requires_grad=True)
    opt_w = torch.optim.SGD([w], lr=0.05)
    opt_h = torch.optim.Adam([log_decay], lr=0.05)

    def train_loss():
        fit = (x_train @ w - y_train).pow(2).mean()
        return fit + (log_decay.exp() * w.pow(2)).sum()

    for step in range(5):
        opt_w.zero_grad()
        train_loss().backward()
        opt_w.step()

        val = (x_val @ w - y_val).pow(2).mean()
        (v,) = torch.autograd.grad(val, w)
        (dtrain_dw,) = torch.autograd.grad(train_loss(), w, create_graph=True)
        p = v.clone()
        for _ in range(3):  # Neumann series for H^-1 v
            (hvp,) = torch.autograd.grad(dtrain_dw, w, grad_outputs=v, retain_graph=True)
            v = v - 0.05 * hvp
            p = p + v
        opt_h.zero_grad()
        (-(dtrain_dw * p.detach()).sum()).backward(inputs=[log_decay])
        opt_h.step()
        print(f"step {step}: val {val.item():.4f} decay {log_decay.exp().mean().item():.4f}")


if __name__ == "__main__":
    main()
