"""Trains a tiny causal transformer language model on random tokens for a few steps.

The model (token + learned position embeddings, a 2-layer ``nn.TransformerEncoder``
with a causal mask and dropout, a final LayerNorm and an output head tied to the
token embedding) is trained with AdamW, ``clip_grad_norm_`` and a linear-warmup
``LambdaLR`` schedule, then evaluated under ``torch.no_grad()``. There is no bug:
gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyLM(nn.Module):
    def __init__(self, vocab_size=64, d_model=32, nhead=4, num_layers=2, max_len=32, dropout=0.1):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Parameter(torch.zeros(1, max_len, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=4 * d_model, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying
        nn.init.normal_(self.pos_emb, std=0.02)

    def forward(self, tokens):
        seq_len = tokens.size(1)
        h = self.tok_emb(tokens) * math.sqrt(self.tok_emb.embedding_dim)
        h = h + self.pos_emb[:, :seq_len]
        mask = nn.Transformer.generate_square_subsequent_mask(seq_len)
        h = self.encoder(h, mask=mask, is_causal=True)
        return self.lm_head(self.norm(h))


def main():
    torch.manual_seed(0)
    vocab_size, seq_len, batch_size = 64, 16, 16
    train_tokens = torch.randint(0, vocab_size, (batch_size, seq_len + 1))
    val_tokens = torch.randint(0, vocab_size, (batch_size, seq_len + 1))

    model = TinyLM(vocab_size=vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    warmup_steps = 3
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps)
    )

    for step in range(6):
        model.train()
        inputs, targets = train_tokens[:, :-1], train_tokens[:, 1:]
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        scheduler.step()
        print(f"step {step}: loss {loss.item():.4f} lr {scheduler.get_last_lr()[0]:.5f}")

    model.eval()
    with torch.no_grad():
        logits = model(val_tokens[:, :-1])
        val_loss = F.cross_entropy(logits.reshape(-1, vocab_size), val_tokens[:, 1:].reshape(-1))
    print(f"val loss {val_loss.item():.4f} (ppl {math.exp(val_loss.item()):.1f})")


if __name__ == "__main__":
    main()
