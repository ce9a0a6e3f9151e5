"""The small decoder-only transformer of the grokking literature, written for CPU or GPU.

Shape follows Power et al. (2022) and the Grokfast reference code (``ironjr/grokfast``
``main.py``): token and position embeddings, ``layers`` blocks of causal multi-head
attention and a 4x GELU MLP, a final LayerNorm and a bias-free unembedding; loss and
accuracy are taken on the last position only. Two details follow that code on purpose:
each block normalises the residual stream before attention and keeps the normalised
stream (``x = ln1(x); x = x + attn(x)``), and the attention projections start as
``nn.MultiheadAttention``'s do (Xavier-uniform weights, zero biases). The last block
computes only the last position, the one read out: the same function at about two
thirds of the cost of a 2-layer model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position i sees positions <= i."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Outputs for every position, or (``last_only``) for the last one only: the last
        query sees every position, so no mask is needed and the other queries are skipped."""
        batch, seq, dim = x.shape
        heads, hd = self.heads, dim // self.heads
        if last_only:
            w_q, w_kv = self.qkv.weight.split((dim, 2 * dim))
            b_q, b_kv = self.qkv.bias.split((dim, 2 * dim))
            q = F.linear(x[:, -1:], w_q, b_q).view(batch, 1, heads, hd)
            k, v = F.linear(x, w_kv, b_kv).view(batch, seq, 2, heads, hd).unbind(2)
            causal = False
        else:
            q, k, v = self.qkv(x).view(batch, seq, 3, heads, hd).unbind(2)
            causal = True
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
        )
        return self.out(y.transpose(1, 2).reshape(batch, q.shape[1], dim))


class Block(nn.Module):
    """Attention then MLP, residual stream normalised first (as in the reference code)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        x = self.ln1(x)
        x = (x[:, -1:] if last_only else x) + self.attn(x, last_only)
        return x + self.mlp(self.ln2(x))


class Decoder(nn.Module):
    """Maps token sequences ``(batch, seq)`` to next-token logits of the last position."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, seq_len: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Embedding(seq_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(x.shape[1], device=x.device)
        h = self.tokens(x) + self.positions(pos)
        # Only the last position is read out, so the last block computes only it.
        for i, block in enumerate(self.blocks):
            h = block(h, last_only=i == len(self.blocks) - 1)
        return self.head(self.ln_f(h[:, -1]))
