"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

An in-batch-negatives loss couples every example of the batch, so the batch cannot simply be split
into accumulation steps. GradCache splits the *encoder* work instead:

1. embed the batch chunk by chunk without building a graph (``torch.no_grad``), recording the random
   state before each chunk;
2. compute the loss on all embeddings, made leaf tensors, and take ``d loss / d embeddings`` (the
   "gradient cache"); the loss may gather across ranks (:mod:`lacos_lightning.losses.distributed`);
3. run each chunk again, now with a graph and with the chunk's random state restored so dropout masks
   are the same as in step 1, and backpropagate ``sum(embeddings_chunk * cached_grad_chunk)``.

By the chain rule the parameter gradients are those of one pass over the whole batch, while the
activation memory is that of one chunk. The price is a second forward pass. Only parameters that
require grad (LoRA adapters, a projection) receive gradients, so quantized frozen backbones work as
usual.

Assumptions: the encoder is a pure function of its input and the random state (no batch statistics,
no state updated in the forward); its random ops use the global CPU generator or the CUDA generators.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch


class RngState:
    """The global CPU and CUDA random states at one moment, to replay them later."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []

    def restore(self) -> None:
        """Make the generators continue exactly as they did after this state was captured."""
        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(self.cuda)


def split_features(features: dict[str, torch.Tensor], chunk_size: int) -> list[dict[str, torch.Tensor]]:
    """Cut a tokenized batch into chunks of at most ``chunk_size`` rows (the last may be smaller).

    Columns that are padding in every row of a chunk are dropped at the end of the sequence (the
    attention mask hides them from every token and from pooling), so a chunk of short texts costs less.
    """
    size = next(iter(features.values())).size(0)
    chunks = []
    for start in range(0, size, chunk_size):
        part = {k: v[start : start + chunk_size] for k, v in features.items()}
        mask = part.get("attention_mask")
        if mask is not None and mask.dim() == 2:
            used = mask.any(0).nonzero()
            keep = int(used.max()) + 1 if used.numel() else mask.size(1)
            if keep < mask.size(1):
                width = mask.size(1)
                part = {k: v[:, :keep] if v.dim() == 2 and v.size(1) == width else v for k, v in part.items()}
        chunks.append(part)
    return chunks


def grad_cache_step(
    embed: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    features: dict[str, torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int,
    backward: Callable[[torch.Tensor], None] | None = None,
    no_sync: Callable[[], AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Accumulate into ``.grad`` the gradients of ``loss_fn(embed(features))``, ``chunk_size`` rows at a time.

    Args:
        embed: the encoder: tokenized rows -> (rows, dim) embeddings.
        features: the whole batch, tokenized as one tensor per key (rows first).
        loss_fn: all embeddings, in row order -> scalar loss. It may gather across ranks: it is run once,
            on every rank, and its backward (the gather's collective included) once.
        chunk_size: rows per chunk.
        backward: how to backpropagate a scalar (default ``Tensor.backward``; Lightning's
            ``manual_backward`` in a LightningModule). Called once per chunk.
        no_sync: context manager factory that turns off data-parallel gradient synchronisation; every
            chunk but the last runs inside it, so gradients are reduced across ranks once per step
            (Lightning's ``strategy.block_backward_sync``).

    Returns:
        The loss, detached.
    """
    chunks = split_features(features, chunk_size)
    states: list[RngState] = []
    outputs: list[torch.Tensor] = []
    with torch.no_grad():
        for part in chunks:
            states.append(RngState())
            outputs.append(embed(part))
    cached = torch.cat(outputs).detach().requires_grad_()
    with torch.enable_grad():
        loss = loss_fn(cached)
        (grad,) = torch.autograd.grad(loss, cached)
    grads = grad.split([out.size(0) for out in outputs])
    after = RngState()
    backward = backward or torch.Tensor.backward
    try:
        for i, (part, state, chunk_grad) in enumerate(zip(chunks, states, grads)):
            state.restore()
            sync_off = no_sync is not None and i < len(chunks) - 1
            with no_sync() if sync_off else nullcontext():
                emb = embed(part)
                backward((emb * chunk_grad.to(emb.dtype)).sum())
    finally:
        after.restore()  # the random stream goes on as after one pass, not two
    return loss.detach()
