"""Trains an encoder + head where a custom ``ScaleGrad`` function damps the head's gradient.

``ScaleGrad`` is the identity in the forward pass and multiplies the gradient by
``scale`` in the backward pass, so the shared encoder learns more slowly than the head.

Bug: ``backward`` tests ``ctx.needs_input_grad[1]`` (the float ``scale``, which never
needs a gradient) instead of ``ctx.needs_input_grad[0]`` (the features), so it always
returns None for the features. Autograd treats that as "no gradient": every
``model.encoder.*`` parameter keeps ``grad is None`` and the encoder never learns, while
the head trains normally. Nothing crashes. Fix: use ``ctx.needs_input_grad[0]``.
"""

# gradcheck-expect: function_returns_none model.encoder.0.weight model.encoder.0.bias model.encoder.2.weight model.encoder.2.bias
# gradcheck-exit: 1

import torch
import torch.nn as nn


class ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return (grad_output * ctx.scale if ctx.needs_input_grad[1] else None), None  # <- BUG


class Net(nn.Module):
    def __init__(self, in_dim=16, hidden=32, num_classes=4, encoder_grad_scale=0.1):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, num_classes)
        self.encoder_grad_scale = encoder_grad_scale

    def forward(self, x):
        h = ScaleGrad.apply(self.encoder(x), self.encoder_grad_scale)
        return self.head(h)


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 16)
    y = torch.randint(0, 4, (128,))

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    criterion = nn.CrossEntropyLoss()

    for step in range(5):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
