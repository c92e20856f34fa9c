"""Trains an MLP with CPU autocast (bfloat16) and ``torch.amp.GradScaler``.

The forward pass runs under ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)``;
the loss is scaled with ``scaler.scale(loss).backward()``, the gradients are unscaled
with ``scaler.unscale_(optimizer)`` before clipping, and ``scaler.step(optimizer)`` /
``scaler.update()`` apply the update. Every parameter receives a gradient each step.
There is no bug: gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    x = torch.randn(128, 20)
    y = torch.randint(0, 5, (128,))

    model = nn.Sequential(
        nn.Linear(20, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 5)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cpu")
    criterion = nn.CrossEntropyLoss()

    for step in range(6):
        optimizer.zero_grad()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            logits = model(x)
        loss = criterion(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
        print(f"step {step}: loss {loss.item():.4f} grad norm {grad_norm.item():.4f}")


if __name__ == "__main__":
    main()
