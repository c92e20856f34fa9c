"""A feature extractor of the user's own project, imported by the family-9 scripts."""

import torch
from torch import nn


class Backbone(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.stem = nn.Linear(d_in, d_out)
        self.mix = nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.stem(x))
        with torch.set_grad_enabled(False):  # <- BUG
            h = h + torch.tanh(self.mix(h))
        return h
