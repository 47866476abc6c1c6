"""The chunked linear cross-entropy equals the plain one, in value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_ffn.loss import IGNORE_INDEX, linear_cross_entropy


def reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(hidden @ weight.t(), targets, ignore_index=IGNORE_INDEX)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
@pytest.mark.parametrize("with_ignored", [False, True])
def test_chunked_loss_and_grads_equal_plain(chunk_size: int, with_ignored: bool) -> None:
    g = torch.Generator().manual_seed(0)
    n, d, v = 93, 16, 301
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, d, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, v, (n,), generator=g)
    if with_ignored:
        targets[::5] = IGNORE_INDEX

    expected = reference(hidden, weight, targets)
    exp_gh, exp_gw = torch.autograd.grad(expected * 3.0, (hidden, weight))
    got = linear_cross_entropy(hidden, weight, targets, chunk_size)
    got_gh, got_gw = torch.autograd.grad(got * 3.0, (hidden, weight))

    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_gh, exp_gh, rtol=0, atol=1e-10)
    torch.testing.assert_close(got_gw, exp_gw, rtol=0, atol=1e-10)


def test_batched_shapes_and_fp32() -> None:
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 9, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (2, 9), generator=g)
    got = linear_cross_entropy(hidden, weight, targets, chunk_size=4)
    got.backward()
    expected = reference(hidden.detach().reshape(-1, 8), weight.detach(), targets.reshape(-1))
    assert torch.allclose(got, expected, atol=1e-6)
    assert hidden.grad.shape == hidden.shape and weight.grad.shape == weight.shape


def test_no_grad_path_and_plain_mode() -> None:
    g = torch.Generator().manual_seed(2)
    hidden, weight = torch.randn(10, 4, generator=g), torch.randn(20, 4, generator=g)
    targets = torch.randint(0, 20, (10,), generator=g)
    with torch.no_grad():
        chunked = linear_cross_entropy(hidden, weight, targets, chunk_size=3)
    plain = linear_cross_entropy(hidden, weight, targets, chunk_size=0)
    assert torch.allclose(chunked, plain, atol=1e-6)
    assert torch.allclose(plain, reference(hidden, weight, targets))


def test_all_targets_ignored_gives_zero_not_nan() -> None:
    hidden = torch.randn(4, 3, requires_grad=True)
    weight = torch.randn(6, 3, requires_grad=True)
    targets = torch.full((4,), IGNORE_INDEX)
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=2)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(hidden.grad == 0)
