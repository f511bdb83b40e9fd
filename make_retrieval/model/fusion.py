"""Cross-modal fusion (ALBEF style, docs/METHOD.md Ours): title tokens self-attend and cross-attend to
image patches; the fused feature is the output at the title's first ([CLS]) position.

A learned "no image" token is always in the memory, so text-only products fuse without NaNs from an
all-masked attention row.
"""

from __future__ import annotations

import torch
from torch import nn


class FusionEncoder(nn.Module):
    """``layers`` transformer decoder blocks: title tokens attend to image patch tokens."""

    def __init__(self, text_dim: int, image_dim: int, layers: int, heads: int | None = None):
        super().__init__()
        # default: the most heads of >= 64 dimensions that divide the width (MiniLM's 384 -> 6)
        heads = heads or max(h for h in range(1, max(1, text_dim // 64) + 1) if text_dim % h == 0)
        self.image_proj = nn.Linear(image_dim, text_dim)
        self.no_image = nn.Parameter(torch.zeros(1, 1, text_dim))
        block = nn.TransformerDecoderLayer(
            text_dim, heads, dim_feedforward=text_dim * 2, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerDecoder(block, layers)

    def forward(
        self, tokens: torch.Tensor, token_mask: torch.Tensor, patches: torch.Tensor, has_image: torch.Tensor
    ) -> torch.Tensor:
        """tokens (B,T,Dt), token_mask (B,T) bool, patches (B,P,Di), has_image (B,) bool -> (B,Dt)."""
        batch = tokens.shape[0]
        memory = torch.cat([self.no_image.expand(batch, -1, -1), self.image_proj(patches)], dim=1)
        memory_pad = torch.cat(
            [
                torch.zeros(batch, 1, dtype=torch.bool, device=tokens.device),
                (~has_image).unsqueeze(1).expand(-1, patches.shape[1]),
            ],
            dim=1,
        )
        fused = self.blocks(tokens, memory, tgt_key_padding_mask=~token_mask, memory_key_padding_mask=memory_pad)
        return fused[:, 0]
