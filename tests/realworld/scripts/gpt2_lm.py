"""GPT-2 (random weights, tiny config) trained as a causal LM for 3 steps. Bug (--bug): the
hidden states are detached before the LM head, so no transformer block learns."""

import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

BUG = "--bug" in sys.argv
torch.manual_seed(0)
config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=101, n_positions=32)
model = GPT2LMHeadModel(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

for step in range(3):
    ids = torch.randint(0, 101, (4, 16))
    if BUG:
        hidden = model.transformer(ids).last_hidden_state.detach()  # BUG
        logits = model.lm_head(hidden)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 101), ids[:, 1:].reshape(-1)
        )
    else:
        loss = model(input_ids=ids, labels=ids).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
