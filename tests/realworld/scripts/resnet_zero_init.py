"""A small ResNet written like timm's (each block zero-initialises its last BatchNorm weight,
`zero_init_last=True`), trained for 3 steps. By design the first backward gives the block's
first layers an all-zero gradient (the zero BN weight blocks it until it has moved once): info,
not an error. Bug (--bug): the stem runs under torch.no_grad()."""

import sys

import torch
from torch import nn

BUG = "--bug" in sys.argv


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResNet(nn.Module):
    def __init__(self, num_classes: int = 10, zero_init_last: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.layers = nn.Sequential(BasicBlock(16), BasicBlock(16))
        self.fc = nn.Linear(16, num_classes)
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if BUG:
            with torch.no_grad():  # BUG
                h = self.stem(x)
        else:
            h = self.stem(x)
        h = self.layers(h)
        return self.fc(h.mean((2, 3)))


torch.manual_seed(0)
model = ResNet()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for step in range(3):
    x = torch.randn(8, 3, 16, 16)
    y = torch.randint(0, 10, (8,))
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
