"""Trains a small regression MLP for two epochs from a ``DataLoader`` with two worker processes.

The data is an in-memory ``TensorDataset`` loaded with ``num_workers=2``; the
training code sits under ``if __name__ == "__main__":`` so worker processes can
import the script safely. There is no bug: gradcheck should report nothing (and
must cope with the worker subprocesses).
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def main():
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = x @ torch.randn(10, 1) + 0.1 * torch.randn(256, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, num_workers=2)

    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.MSELoss()

    for epoch in range(2):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * xb.size(0)
        print(f"epoch {epoch}: loss {total / len(loader.dataset):.4f}")


if __name__ == "__main__":
    main()
