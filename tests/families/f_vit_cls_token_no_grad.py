"""Issue 14 (6): a Hugging Face ViT backbone run under no_grad. Every tensor the region cut off —
including `cls_token`, used through `expand` + `cat` (a view made under no_grad requires grad
but has no grad_fn) — belongs to the one no_grad finding."""

# gradcheck-expect: no_grad model.vit.embeddings.cls_token model.vit.embeddings.position_embeddings model.vit.embeddings.patch_embeddings.projection.weight model.vit.embeddings.patch_embeddings.projection.bias model.vit.encoder.layer.0.attention.attention.query.weight model.vit.encoder.layer.0.attention.attention.query.bias model.vit.encoder.layer.0.attention.attention.key.weight model.vit.encoder.layer.0.attention.attention.key.bias model.vit.encoder.layer.0.attention.attention.value.weight model.vit.encoder.layer.0.attention.attention.value.bias model.vit.encoder.layer.0.attention.output.dense.weight model.vit.encoder.layer.0.attention.output.dense.bias model.vit.encoder.layer.0.intermediate.dense.weight model.vit.encoder.layer.0.intermediate.dense.bias model.vit.encoder.layer.0.output.dense.weight model.vit.encoder.layer.0.output.dense.bias model.vit.encoder.layer.0.layernorm_before.weight model.vit.encoder.layer.0.layernorm_before.bias model.vit.encoder.layer.0.layernorm_after.weight model.vit.encoder.layer.0.layernorm_after.bias model.vit.layernorm.weight model.vit.layernorm.bias
# gradcheck-exit: 1

import torch
from transformers import ViTConfig, ViTForImageClassification

torch.manual_seed(0)
config = ViTConfig(
    image_size=16,
    patch_size=4,
    num_channels=3,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=4,
)
model = ViTForImageClassification(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
for step in range(2):
    images, labels = torch.randn(4, 3, 16, 16), torch.randint(0, 4, (4,))
    with torch.no_grad():  # <- BUG
        feats = model.vit(pixel_values=images).last_hidden_state[:, 0]
    loss = torch.nn.functional.cross_entropy(model.classifier(feats), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
