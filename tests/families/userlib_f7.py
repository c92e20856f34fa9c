"""A multi-task model of the user's own project, imported by the family-7 scripts."""

import torch
from torch import nn


class MultiTask(nn.Module):
    def __init__(self, d_in: int, tasks: dict[str, int]) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_in, 32), nn.ReLU())
        self.heads = {name: nn.Linear(32, n) for name, n in tasks.items()}  # <- BUG

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {name: head(h) for name, head in self.heads.items()}
