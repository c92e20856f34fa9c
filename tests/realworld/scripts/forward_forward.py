"""Forward-Forward (Hinton, 2022) as in pytorch/examples: layers kept in a plain Python list, each
with its own optimizer and its own local loss; the input to each layer is detached by design."""

import torch
from torch import nn


class FFLayer(nn.Linear):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(d_in, d_out)
        self.opt = torch.optim.Adam(self.parameters(), lr=0.03)
        self.threshold = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / (x.norm(2, 1, keepdim=True) + 1e-4)
        return torch.relu(super().forward(x))

    def train_step(
        self, x_pos: torch.Tensor, x_neg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g_pos = self.forward(x_pos).pow(2).mean(1)
        g_neg = self.forward(x_neg).pow(2).mean(1)
        loss = torch.log(
            1 + torch.exp(torch.cat([-g_pos + self.threshold, g_neg - self.threshold]))
        ).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return self.forward(x_pos).detach(), self.forward(x_neg).detach()


class FFNet(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.layers = [FFLayer(dims[d], dims[d + 1]) for d in range(len(dims) - 1)]

    def train_step(self, x_pos: torch.Tensor, x_neg: torch.Tensor) -> None:
        h_pos, h_neg = x_pos, x_neg
        for layer in self.layers:
            h_pos, h_neg = layer.train_step(h_pos, h_neg)


torch.manual_seed(0)
net = FFNet([20, 32, 32])
for step in range(3):
    x_pos = torch.randn(16, 20) + 1
    x_neg = torch.randn(16, 20) - 1
    net.train_step(x_pos, x_neg)
print("done")
