# expect: clean, exit 0 (fp16 autocast + GradScaler, fused AdamW, clip, padding_idx embedding)
import torch
from torch import nn

dev = "cuda"
torch.manual_seed(0)
emb = nn.Embedding(100, 64, padding_idx=0).to(dev)
layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True).to(dev)
head = nn.Linear(64, 100).to(dev)
params = [*emb.parameters(), *layer.parameters(), *head.parameters()]
opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
scaler = torch.amp.GradScaler("cuda")
for _step in range(12):
    tokens = torch.randint(0, 100, (8, 16), device=dev)
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        logits = head(layer(emb(tokens)))
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, 100), tokens.reshape(-1))
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    scaler.step(opt)
    scaler.update()
print("done", float(loss))
