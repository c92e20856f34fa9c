"""A ViT image classifier (Hugging Face, random weights, tiny config) for 3 steps. Bug (--bug): the
loss is rebuilt from .item(), so nothing learns."""

import sys

import torch
from transformers import ViTConfig, ViTForImageClassification

BUG = "--bug" in sys.argv
torch.manual_seed(0)
config = ViTConfig(
    image_size=16,
    patch_size=4,
    num_channels=3,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=4,
)
model = ViTForImageClassification(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(3):
    images = torch.randn(4, 3, 16, 16)
    labels = torch.randint(0, 4, (4,))
    loss = model(pixel_values=images, labels=labels).loss
    if BUG:
        loss = torch.tensor(loss.item(), requires_grad=True)  # BUG
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
