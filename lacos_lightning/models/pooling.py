"""Pooling of token states into one vector, correct for left and right padding.

Every mode reads the attention mask rather than assuming where padding sits, so decoders padded on
the left (BLOOM's default) and encoders padded on the right give the same vectors for the same text.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("mean", "cls", "last_token", "weighted_mean")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``hidden`` (batch, seq, dim) over the tokens where ``mask`` (batch, seq) is 1.

    Modes:
        mean: average of the real tokens.
        cls: the first real token (the first position whose mask is 1).
        last_token: the last real token (the last position whose mask is 1).
        weighted_mean: SGPT position-weighted mean, weight k for the k-th real token (1-based),
            so later tokens of a causal model count more; padding never shifts the weights.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    mask = mask.to(hidden.dtype)
    if mode == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
    if mode == "weighted_mean":
        weights = (torch.cumsum(mask, dim=1) * mask).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    rows = torch.arange(hidden.size(0), device=hidden.device)
    if mode == "cls":
        first = mask.argmax(dim=1)
        return hidden[rows, first]
    seq_len = mask.size(1)
    last = seq_len - 1 - mask.flip(1).argmax(dim=1)
    return hidden[rows, last]
