"""A LLaMA-family causal LM (random weights, tiny config) trained for 3 steps. Bug (--bug): the
embedding layer is frozen after the optimizer was built."""

import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

BUG = "--bug" in sys.argv
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
model = LlamaForCausalLM(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
if BUG:
    model.model.embed_tokens.requires_grad_(False)  # BUG

for step in range(3):
    ids = torch.randint(0, 128, (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
