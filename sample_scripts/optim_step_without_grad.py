"""Trains and validates a small classifier through one shared ``train_or_eval_step`` helper.

Bug: the helper always calls ``optimizer.step()``, also in the validation phase where it
runs under ``torch.no_grad()`` and no ``backward()`` happened since its
``optimizer.zero_grad(set_to_none=True)``. Every parameter's ``grad`` is None there, so
SGD skips them and the weights do not change; the extra step is harmless today but
wrong (with ``set_to_none=False``, or an optimizer that counts steps, it would not be).
Fix: only call ``optimizer.step()`` when ``train`` is true.
"""

# gradcheck-expect: step_without_grad model.0.weight model.0.bias model.2.weight model.2.bias
# gradcheck-severity: warning
# gradcheck-exit: 0

import torch
import torch.nn as nn


def train_or_eval_step(model, optimizer, criterion, x, y, train):
    model.train(train)
    optimizer.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(train):
        loss = criterion(model(x), y)
        if train:
            loss.backward()
    optimizer.step()  # <- BUG
    return loss.item()


def main():
    torch.manual_seed(0)
    x_train, y_train = torch.randn(128, 12), torch.randint(0, 3, (128,))
    x_val, y_val = torch.randn(32, 12), torch.randint(0, 3, (32,))

    model = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    for epoch in range(3):
        train_loss = train_or_eval_step(model, optimizer, criterion, x_train, y_train, True)
        val_loss = train_or_eval_step(model, optimizer, criterion, x_val, y_val, False)
        print(f"epoch {epoch}: train loss {train_loss:.4f} val loss {val_loss:.4f}")


if __name__ == "__main__":
    main()
