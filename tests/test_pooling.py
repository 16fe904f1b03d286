"""pool(): every mode against hand-computed values and an independent loop; left vs right padding."""

from __future__ import annotations

import pytest
import torch

from lacos_lightning.models.pooling import POOLING_MODES, pool

# Two sequences of dim 2: the first has 3 real tokens, the second 2. Padding holds large garbage so a
# mode that reads padding gives visibly wrong numbers.
PAD = 1000.0
HIDDEN_RIGHT = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 4.0], [5.0, 9.0], [PAD, -PAD]],
        [[-1.0, 0.0], [2.0, 6.0], [PAD, PAD], [-PAD, PAD]],
    ]
)
MASK_RIGHT = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])

# The same real tokens padded on the left.
HIDDEN_LEFT = torch.tensor(
    [
        [[PAD, -PAD], [1.0, 2.0], [3.0, 4.0], [5.0, 9.0]],
        [[PAD, PAD], [-PAD, PAD], [-1.0, 0.0], [2.0, 6.0]],
    ]
)
MASK_LEFT = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])

# Worked out by hand.
EXPECTED = {
    # (1+3+5)/3, (2+4+9)/3 ; (-1+2)/2, (0+6)/2
    "mean": [[3.0, 5.0], [0.5, 3.0]],
    "cls": [[1.0, 2.0], [-1.0, 0.0]],
    "last_token": [[5.0, 9.0], [2.0, 6.0]],
    # weights 1,2,3 (sum 6): (1+6+15)/6, (2+8+27)/6 ; weights 1,2 (sum 3): (-1+4)/3, (0+12)/3
    "weighted_mean": [[22.0 / 6.0, 37.0 / 6.0], [1.0, 4.0]],
}


def loop_pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Independent reference: plain python loops over the positions whose mask is 1."""
    out = []
    for b in range(hidden.size(0)):
        positions = [t for t in range(hidden.size(1)) if int(mask[b, t]) == 1]
        rows = [hidden[b, t].double() for t in positions]
        if mode == "mean":
            vec = sum(rows) / len(rows)
        elif mode == "cls":
            vec = rows[0]
        elif mode == "last_token":
            vec = rows[-1]
        elif mode == "weighted_mean":
            weights = list(range(1, len(rows) + 1))
            vec = sum(w * r for w, r in zip(weights, rows, strict=True)) / sum(weights)
        else:
            raise AssertionError(mode)
        out.append(vec)
    return torch.stack(out)


def test_modes_list() -> None:
    assert set(POOLING_MODES) == set(EXPECTED)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_hand_values_right_padding(mode: str) -> None:
    got = pool(HIDDEN_RIGHT, MASK_RIGHT, mode)
    torch.testing.assert_close(got, torch.tensor(EXPECTED[mode]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_hand_values_left_padding(mode: str) -> None:
    got = pool(HIDDEN_LEFT, MASK_LEFT, mode)
    torch.testing.assert_close(got, torch.tensor(EXPECTED[mode]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_bool_and_float_masks(mode: str) -> None:
    for mask in (MASK_RIGHT.bool(), MASK_RIGHT.float()):
        torch.testing.assert_close(pool(HIDDEN_RIGHT, mask, mode), torch.tensor(EXPECTED[mode]), rtol=0, atol=1e-6)


def _random_batch(lengths: list[int], seq: int, dim: int, side: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token states for sequences of ``lengths``, padded with garbage on ``side``.

    The real tokens of sequence i are the same for both sides (drawn from the same generator).
    """
    gen = torch.Generator().manual_seed(seed)
    real = [torch.randn(n, dim, generator=gen) for n in lengths]
    garbage = torch.randn(len(lengths), seq, dim, generator=torch.Generator().manual_seed(seed + 1)) * 100
    hidden = garbage.clone()
    mask = torch.zeros(len(lengths), seq, dtype=torch.long)
    for i, (n, states) in enumerate(zip(lengths, real, strict=True)):
        if side == "right":
            hidden[i, :n] = states
            mask[i, :n] = 1
        else:
            hidden[i, seq - n :] = states
            mask[i, seq - n :] = 1
    return hidden, mask


@pytest.mark.parametrize("mode", sorted(EXPECTED))
@pytest.mark.parametrize("side", ["right", "left"])
def test_against_independent_loop(mode: str, side: str) -> None:
    hidden, mask = _random_batch([7, 1, 4, 7, 2], seq=7, dim=5, side=side, seed=3)
    got = pool(hidden, mask, mode)
    torch.testing.assert_close(got.double(), loop_pool(hidden, mask, mode), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_left_and_right_padding_agree(mode: str) -> None:
    lengths = [6, 3, 1, 5]
    right_h, right_m = _random_batch(lengths, seq=6, dim=8, side="right", seed=11)
    left_h, left_m = _random_batch(lengths, seq=6, dim=8, side="left", seed=11)
    # sanity: the padding really differs between the two layouts
    assert not torch.equal(right_m, left_m)
    torch.testing.assert_close(pool(right_h, right_m, mode), pool(left_h, left_m, mode), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_padding_amount_does_not_matter(mode: str) -> None:
    """The same sequence alone (no padding) and inside a longer padded batch pools identically."""
    gen = torch.Generator().manual_seed(5)
    states = torch.randn(3, 4, generator=gen)
    alone = pool(states[None], torch.ones(1, 3, dtype=torch.long), mode)
    for side in ("right", "left"):
        hidden = torch.full((1, 9, 4), 55.0)
        mask = torch.zeros(1, 9, dtype=torch.long)
        where = slice(0, 3) if side == "right" else slice(6, 9)
        hidden[0, where] = states
        mask[0, where] = 1
        torch.testing.assert_close(pool(hidden, mask, mode), alone, rtol=1e-6, atol=1e-6)


def test_output_shape_and_dtype() -> None:
    hidden = torch.randn(3, 5, 7, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.long)
    for mode in POOLING_MODES:
        out = pool(hidden, mask, mode)
        assert out.shape == (3, 7)
        assert out.dtype == torch.float64


@pytest.mark.parametrize("mode", ["max", "MEAN", "", "last"])
def test_unknown_mode_raises(mode: str) -> None:
    with pytest.raises(ValueError, match="unknown pooling mode"):
        pool(HIDDEN_RIGHT, MASK_RIGHT, mode)
