"""Helpers of the family test scripts: "a helper function in another file of the user's project"."""

import torch


def scalar_penalty(t):
    return 0.01 * float(t.pow(2).mean())  # <- BUG f1_float_helper


def collect_scores(outs):
    return torch.stack([torch.tensor(v) for v in outs])  # <- BUG f2_stack_helper


def set_trainable(net, flag):
    for p in net.parameters():
        p.requires_grad = flag  # <- BUG f3_helper_flag


def stabilise_(t):
    t.data.clamp_(max=0.0)  # <- BUG f6_exp_clamp_helper
    return t
