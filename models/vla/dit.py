"""The DiT action decoder (GR00T N1.5–N1.7 design, written in plain torch).

- **time**: the flow time t ∈ [0, 1] → sinusoidal features of ``t·1000`` (GR00T buckets t into 1000
  steps; the continuous value is used here) → MLP → ``temb``;
- **blocks**: AdaLayerNorm (``norm(x)·(1 + scale) + shift``, (scale, shift) = Linear(SiLU(temb))) before
  attention, even blocks cross-attend to the backbone's hidden states (with its padding mask), odd
  blocks self-attend over the chunk; LayerNorm + GELU-tanh feed-forward; residuals around both;
- **output**: LayerNorm modulated by ``temb`` (``proj_out_1``), then ``proj_out_2``;
- **per-embodiment layers** (``CategorySpecific*``): weight tensors ``[num_embodiments, in, out]``
  indexed by ``embodiment_id`` — the state encoder, the action encoder (W1(a) ‖ sinusoid(t) → W2 →
  swish → W3) and the action decoder; one body's action space never shares input/output weights
  with another's;
- **sequence**: ``[state token, H action tokens] + learned positions``; the last H outputs are decoded.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[...] → [..., dim] (cos ‖ sin, as diffusers' ``Timesteps(flip_sin_to_cos=True)``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEncoder(nn.Module):
    """t ∈ [0, 1] → temb [B, dim]: sinusoid(256) of t·1000 → Linear → SiLU → Linear."""

    def __init__(self, dim: int, channels: int = 256):
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        p = next(self.parameters())
        return self.mlp(sinusoid(t * 1000.0, self.channels).to(p.dtype))


class CategorySpecificLinear(nn.Module):
    """A Linear layer per category: ``y = x @ W[c] + b[c]`` for each row's category c."""

    def __init__(self, num_categories: int, in_dim: int, out_dim: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(num_categories, in_dim, out_dim) * (in_dim ** -0.5))
        self.b = nn.Parameter(torch.zeros(num_categories, out_dim))

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        w, b = self.W[cat_ids], self.b[cat_ids]  # [B, in, out], [B, out]
        return torch.bmm(x, w) + b[:, None]


class CategorySpecificMLP(nn.Module):
    def __init__(self, num_categories: int, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_dim, hidden)
        self.layer2 = CategorySpecificLinear(num_categories, hidden, out_dim)

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, cat_ids)), cat_ids)


class MultiEmbodimentActionEncoder(nn.Module):
    """Noisy action chunk [B, H, A] and time [B] → [B, H, hidden]: W1(a) ‖ sinusoid(t) → W2 → swish → W3."""

    def __init__(self, action_dim: int, hidden: int, num_categories: int):
        super().__init__()
        self.hidden = hidden
        self.W1 = CategorySpecificLinear(num_categories, action_dim, hidden)
        self.W2 = CategorySpecificLinear(num_categories, 2 * hidden, hidden)
        self.W3 = CategorySpecificLinear(num_categories, hidden, hidden)

    def forward(self, actions: torch.Tensor, t: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        a = self.W1(actions, cat_ids)
        tau = sinusoid((t * 1000.0)[:, None].expand(-1, actions.shape[1]), self.hidden).to(a.dtype)
        x = F.silu(self.W2(torch.cat([a, tau], dim=-1), cat_ids))
        return self.W3(x, cat_ids)


class AdaLayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention (self, or cross with keys/values from ``context`` of width ``context_dim``)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(context_dim or dim, inner)
        self.to_v = nn.Linear(context_dim or dim, inner)
        self.to_out = nn.Linear(inner, dim)

    def keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, _ = src.shape
        k = self.to_k(src).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(src).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        return k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, kv: tuple | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.to_q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k, v = kv if kv is not None else self.keys_values(x if context is None else context)
        attn_mask = None if context_mask is None else context_mask[:, None, None, :].bool()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None, dropout: float = 0.0):
        super().__init__()
        self.cross = context_dim is not None
        self.norm1 = AdaLayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim, context_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, temb, context=None, context_mask=None, kv=None):
        h = self.norm1(x, temb)
        x = x + self.drop(self.attn(h, context, context_mask, kv) if self.cross else self.attn(h))
        return x + self.ff(self.norm2(x))


class DiT(nn.Module):
    """Blocks alternate cross-attention (even) and self-attention (odd); output modulated by temb."""

    def __init__(self, dim: int, out_dim: int, layers: int, heads: int, head_dim: int, context_dim: int,
                 dropout: float = 0.0):
        super().__init__()
        self.timestep_encoder = TimestepEncoder(dim)
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, head_dim, context_dim if i % 2 == 0 else None, dropout)
                                    for i in range(layers))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, out_dim)

    def cross_kv(self, context: torch.Tensor) -> dict[int, tuple]:
        """Every cross-attention block's keys/values of ``context``: they do not change across the Euler
        steps of one sampling call (GR00T's ``CrossAttnKVCache``), so they are computed once. Valid for
        that one call only — the next observation has another context."""
        return {i: b.attn.keys_values(context) for i, b in enumerate(self.blocks) if b.cross}

    @staticmethod
    def block_masks(context_mask: torch.Tensor, image_mask: torch.Tensor | None, n_blocks: int,
                    text_every: int = 2) -> list[torch.Tensor]:
        """Each block's cross-attention mask. Without ``image_mask`` every block sees the whole context;
        with it (GR00T N1.6+ ``AlternateVLDiT``) cross block i attends to the non-image tokens when
        ``i % (2·text_every) == 0`` and to the image tokens otherwise. A row with none of the chosen kind
        (no camera) keeps its whole context: an all-masked attention row would be NaN."""
        if image_mask is None:
            return [context_mask] * n_blocks
        ctx = context_mask.bool()
        text, image = ctx & ~image_mask, ctx & image_mask

        def usable(m):
            return torch.where(m.any(1, keepdim=True), m, ctx)

        text, image = usable(text), usable(image)
        return [text if i % (2 * text_every) == 0 else image for i in range(n_blocks)]

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None, kv_cache: dict | None = None,
                image_mask: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.timestep_encoder(t)
        masks = self.block_masks(context_mask, image_mask, len(self.blocks)) if context_mask is not None \
            else [None] * len(self.blocks)
        for i, block in enumerate(self.blocks):
            x = block(x, temb, context, masks[i], kv=None if kv_cache is None else kv_cache.get(i))
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        return self.proj_out_2(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])


class FlowActionHead(nn.Module):
    """The whole flow-matching head: per-embodiment encoders/decoder around the DiT.

    Widths as GR00T's: the encoders write the DiT's inner width (``heads × head_dim``, GR00T's
    ``input_embedding_dim``), the DiT outputs ``hidden`` (GR00T's ``hidden_size``), the decoder maps it to the
    action vector. ``velocity(x_t, t, context, ...)`` → predicted velocity [B, H, action_dim], exactly 0 where
    the target mask is False (the decoder's output is masked, the noisy input is masked before encoding).
    ``state_dropout`` (GR00T N1.7: 0.8) zeroes a row's state features with that probability in training.
    """

    def __init__(self, action_dim: int, state_dim: int, horizon: int, context_dim: int, num_embodiments: int,
                 hidden: int = 128, layers: int = 4, heads: int = 4, head_dim: int = 32, dropout: float = 0.0,
                 state_dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.horizon, self.state_dropout = horizon, state_dropout
        self.vlln = nn.LayerNorm(context_dim)
        self.state_encoder = CategorySpecificMLP(num_embodiments, 2 * state_dim, hidden, inner)
        self.action_encoder = MultiEmbodimentActionEncoder(action_dim, inner, num_embodiments)
        self.position = nn.Parameter(torch.zeros(1, 1 + horizon, inner))
        nn.init.normal_(self.position, std=0.02)
        self.dit = DiT(inner, hidden, layers, heads, head_dim, context_dim, dropout)
        self.action_decoder = CategorySpecificMLP(num_embodiments, hidden, hidden, action_dim)

    def condition(self, context: torch.Tensor) -> torch.Tensor:
        """Backbone hidden states → the DiT's cross-attention memory (GR00T's ``vlln``)."""
        return self.vlln(context)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                 state: torch.Tensor, state_mask: torch.Tensor, target_mask: torch.Tensor,
                 embodiment_id: torch.Tensor, kv_cache: dict | None = None,
                 image_mask: torch.Tensor | None = None) -> torch.Tensor:
        zero = torch.zeros((), dtype=x_t.dtype, device=x_t.device)
        sm = state_mask.bool()
        s_in = torch.cat([torch.where(sm, state, zero), sm.to(state.dtype)], dim=-1)
        s = self.state_encoder(s_in[:, None], embodiment_id)  # [B, 1, inner]
        if self.training and self.state_dropout > 0:
            keep = torch.rand(s.shape[0], 1, 1, device=s.device) >= self.state_dropout
            s = torch.where(keep, s, zero)
        a = self.action_encoder(torch.where(target_mask, x_t, zero), t, embodiment_id)  # [B, H, inner]
        seq = torch.cat([s, a], dim=1) + self.position[:, : 1 + x_t.shape[1]]
        out = self.dit(seq, t, context, context_mask, kv_cache, image_mask)
        v = self.action_decoder(out[:, -x_t.shape[1]:], embodiment_id)
        return torch.where(target_mask, v, zero)
