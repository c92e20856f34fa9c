"""Trains a shared trunk with a main classification head and an auxiliary regression head.

Bug: the auxiliary loss is turned into a Python float with ``.item()`` and then
back into a tensor with ``torch.tensor(aux_value)``; that new tensor is a constant,
so the total loss does not depend on ``model.aux_head`` and its parameters keep
``grad is None``. Fix: add the auxiliary loss tensor itself,
``loss = main_loss + 0.1 * aux_loss``, and call ``.item()`` only for logging.
"""

# gradcheck-expect: python_scalar_roundtrip model.aux_head.weight model.aux_head.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class MultiTaskNet(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.main_head = nn.Linear(hidden, num_classes)
        self.aux_head = nn.Linear(hidden, 1)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 16)
    y = torch.randint(0, 4, (96,))
    y_aux = x.sum(dim=1, keepdim=True)

    model = MultiTaskNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    aux_criterion = nn.MSELoss()

    for step in range(5):
        optimizer.zero_grad()
        h = model.trunk(x)
        main_loss = criterion(model.main_head(h), y)
        aux_value = aux_criterion(model.aux_head(h), y_aux).item()
        loss = main_loss + 0.1 * torch.tensor(aux_value)  # <- BUG
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f} (aux {aux_value:.4f})")


if __name__ == "__main__":
    main()
