"""peft LoRA on a LLaMA-family model (random weights, tiny config), 3 steps. Bug (--bug): the
adapter's output is detached in a wrapper, so no LoRA weight learns."""

import sys

import torch
from peft import LoraConfig, get_peft_model
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
model = get_peft_model(
    LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
for step in range(3):
    ids = torch.randint(0, 128, (2, 16))
    out = model(input_ids=ids, output_hidden_states=True)
    logits = out.logits
    if BUG:
        logits = logits.detach().requires_grad_()  # BUG
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 128), ids[:, 1:].reshape(-1)
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
