"""Trains an MLP classifier with Adam; the training step was copied from the evaluation loop.

Bug: the whole forward pass and the loss are computed inside ``with torch.no_grad():``,
so the loss has no ``grad_fn`` and ``loss.backward()`` raises ``RuntimeError: element 0
of tensors does not require grad and does not have a grad_fn``. Fix: compute the
forward pass and the loss outside the ``no_grad`` block (keep it for evaluation only).
"""

# gradcheck-expect: loss_not_differentiable
# gradcheck-exit: 1

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))

    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        with torch.no_grad():  # <- BUG
            logits = model(x)
            loss = criterion(logits, y)
        print(f"step {step}: loss {loss.item():.4f}")
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
