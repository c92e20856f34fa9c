"""Trains a two-tower (user/item) recommendation model on synthetic click data with Adam.

Bug: the item embedding is re-wrapped with ``torch.tensor(...)``, which copies the
values into a brand-new tensor with no autograd history (PyTorch only warns), so
every ``model.item_tower.*`` parameter keeps ``grad is None`` while the user tower
trains. Fix: use ``model.item_tower(items)`` directly.
"""

# gradcheck-expect: rewrap_tensor model.item_tower.0.weight model.item_tower.0.bias model.item_tower.2.weight model.item_tower.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn
import torch.nn.functional as F


class TwoTower(nn.Module):
    def __init__(self, user_dim=12, item_dim=10, dim=16):
        super().__init__()
        self.user_tower = nn.Sequential(nn.Linear(user_dim, 32), nn.ReLU(), nn.Linear(32, dim))
        self.item_tower = nn.Sequential(nn.Linear(item_dim, 32), nn.ReLU(), nn.Linear(32, dim))


def main():
    torch.manual_seed(0)
    users = torch.randn(128, 12)
    items = torch.randn(128, 10)
    clicks = torch.randint(0, 2, (128,)).float()

    model = TwoTower()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    for step in range(5):
        optimizer.zero_grad()
        u = model.user_tower(users)
        v = torch.tensor(model.item_tower(items))  # <- BUG
        scores = (u * v).sum(dim=-1)
        loss = F.binary_cross_entropy_with_logits(scores, clicks)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
