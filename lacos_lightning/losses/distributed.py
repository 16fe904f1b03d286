"""Cross-device negatives: every rank scores its anchors against the candidates of all ranks.

Under data parallelism (DDP, FSDP, DeepSpeed) each rank embeds only its shard of the global batch. The
functions here gather the shards (with gradients flowing back to the rank that produced them) so that
the in-batch-negatives loss sees ``world_size`` times more negatives, exactly as one process with the
whole batch would.

Gradient scaling. :func:`gather_with_grad`'s backward **sums** the gradient of the gathered tensor over
the ranks and hands each rank its own slice, so the gradients a rank gets for its embeddings include
what every other rank's loss says about them. The data-parallel strategies then **average** parameter
gradients over the ranks. Both together give the gradient of ``mean over ranks of loss_r``; every loss
here is therefore written so that this mean equals the whole-batch loss, with no extra factor:

* MNRL / InfoNCE: ``loss_r`` is the mean over the rank's *local* anchors; with equal shard sizes the
  mean of these means is the mean over all anchors of the global batch.
* CoSENT: every rank computes the *same* global loss from the gathered similarities (a ranking over
  all pairs of the global batch is not a sum of per-rank terms); its mean over ranks is itself.

Equal shapes. ``all_gather`` needs the same shape on every rank. The training sampler
(:class:`lacos_lightning.data.loader.EpochSampler`) drops the incomplete last batch of each epoch
(``drop_last``), so every rank always has ``batch_size`` examples of each role. Embedding width and
dtype are the same on every rank by construction.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lacos_lightning.losses.contrastive import cosent_from_similarities, info_nce


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sums the output gradient over ranks and keeps the local slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, size = world()
        ctx.rank, ctx.size = rank, size
        tensor = tensor.contiguous()
        if dist.get_backend() == "nccl":
            out = tensor.new_empty((size * tensor.shape[0], *tensor.shape[1:]))
            dist.all_gather_into_tensor(out, tensor)
            return out
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            out = grad.new_empty((grad.shape[0] // ctx.size, *grad.shape[1:]))
            dist.reduce_scatter_tensor(out, grad, op=dist.ReduceOp.SUM)
            return out
        grad = grad.clone()  # gloo has no reduce_scatter: sum everything, keep our rows
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(ctx.size)[ctx.rank].contiguous()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` of every rank along dim 0, in rank order; gradients reach the local shard.

    A no-op (returns ``tensor`` itself) when ``torch.distributed`` is not initialised or has one rank.
    Every rank must call it (it is a collective) with a tensor of the same shape and dtype; the
    backward is a collective too, so every rank must also backpropagate through it.
    """
    _, size = world()
    if size == 1:
        return tensor
    if not tensor.requires_grad:
        parts = [torch.empty_like(tensor) for _ in range(size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)
    return _GatherWithGrad.apply(tensor)


def cross_device_mnrl(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    scale: float = 20.0,
    symmetric: bool = False,
) -> torch.Tensor:
    """MNRL / InfoNCE with the positives and hard negatives of every rank as candidates.

    Anchors stay local; candidates are ``[all positives; all hard negatives]`` of the global batch in
    rank order, so local anchor ``i`` of rank ``r`` has its positive at global index ``r * n + i``
    (``n`` = local batch size). With ``symmetric`` the reverse direction ranks the gathered anchors for
    each local positive. On one process this is exactly
    :func:`~lacos_lightning.losses.contrastive.multiple_negatives_ranking`.

    Returns:
        The mean over this rank's anchors; see the module docstring for why no rescaling is needed.
    """
    rank, _ = world()
    candidates = gather_with_grad(positive)
    if negative is not None:
        candidates = torch.cat([candidates, gather_with_grad(negative)])
    labels = torch.arange(anchor.size(0), device=anchor.device) + rank * anchor.size(0)
    loss = info_nce(anchor, candidates, labels, scale)
    if symmetric:
        loss = (loss + info_nce(positive, gather_with_grad(anchor), labels, scale)) / 2
    return loss


def cross_device_cosent(
    emb1: torch.Tensor, emb2: torch.Tensor, scores: torch.Tensor, scale: float = 20.0
) -> torch.Tensor:
    """CoSENT over every pair of pairs of the global batch; every rank returns the same global loss.

    Only the per-pair similarities (one number per pair) and the gold scores are gathered.
    """
    cos = gather_with_grad(F.cosine_similarity(emb1, emb2, dim=-1))
    return cosent_from_similarities(cos, gather_with_grad(scores), scale)
