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


def test_bf16_inputs_close_to_fp64_reference() -> None:
    """bf16 hidden/weight: the matmuls run in bf16 (as F.linear would), softmax and sums in fp32."""
    g = torch.Generator().manual_seed(3)
    n, d, v = 70, 32, 500
    hidden64 = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight64 = torch.randn(v, d, generator=g, dtype=torch.float64) * 0.3
    targets = torch.randint(0, v, (n,), generator=g)
    hidden = hidden64.to(torch.bfloat16).requires_grad_()
    weight = weight64.to(torch.bfloat16).requires_grad_()
    ref_h = hidden.detach().double().requires_grad_()
    ref_w = weight.detach().double().requires_grad_()  # same bf16-rounded values, exact arithmetic
    expected = reference(ref_h, ref_w, targets)
    expected.backward()
    got = linear_cross_entropy(hidden, weight, targets, chunk_size=16)
    got.backward()
    assert got.dtype == torch.float32
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), expected.detach(), rtol=0, atol=2e-2)
    torch.testing.assert_close(hidden.grad.double(), ref_h.grad, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(weight.grad.double(), ref_w.grad, rtol=2e-2, atol=2e-3)


def test_autocast_bf16_matches_plain_loss_under_autocast() -> None:
    """Under autocast (Lightning's bf16-mixed) the chunked loss follows F.linear's bf16 matmul; grads keep fp32."""
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(40, 16, generator=g, requires_grad=True)
    weight = (torch.randn(300, 16, generator=g) * 0.5).requires_grad_()
    targets = torch.randint(0, 300, (40,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = linear_cross_entropy(hidden, weight, targets, chunk_size=0)
        chunked = linear_cross_entropy(hidden, weight, targets, chunk_size=16)
    exp_gh, exp_gw = torch.autograd.grad(plain, (hidden, weight))
    got_gh, got_gw = torch.autograd.grad(chunked, (hidden, weight))
    assert got_gh.dtype == torch.float32 and got_gw.dtype == torch.float32
    torch.testing.assert_close(chunked, plain, rtol=0, atol=1e-4)
    torch.testing.assert_close(got_gh, exp_gh, rtol=2e-2, atol=1e-4)
    torch.testing.assert_close(got_gw, exp_gw, rtol=2e-2, atol=1e-4)
    # and it really ran in bf16: the fp32 loss differs by more than fp32 rounding
    assert abs(chunked.item() - linear_cross_entropy(hidden, weight, targets, chunk_size=16).item()) > 1e-6


def test_reused_workspace_gives_the_same_results_for_any_call_order() -> None:
    """The CPU scratch buffer is kept between calls; shapes and chunk sizes that change must not leak state."""
    from lit_ffn.loss import release_workspace

    g = torch.Generator().manual_seed(5)
    cases = []
    for n, v, chunk in [(50, 200, 64), (20, 90, 7), (61, 310, 30), (50, 200, 64)]:
        hidden = torch.randn(n, 8, generator=g, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(v, 8, generator=g, dtype=torch.float64, requires_grad=True)
        targets = torch.randint(0, v, (n,), generator=g)
        cases.append((hidden, weight, targets, chunk))
    release_workspace()
    for hidden, weight, targets, chunk in cases * 2:
        expected = torch.autograd.grad(reference(hidden, weight, targets), (hidden, weight))
        got = torch.autograd.grad(linear_cross_entropy(hidden, weight, targets, chunk), (hidden, weight))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    release_workspace()


@pytest.mark.parametrize("which", ["hidden", "weight"])
def test_gradient_for_one_input_only(which: str) -> None:
    g = torch.Generator().manual_seed(6)
    hidden = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=which == "hidden")
    weight = torch.randn(30, 4, generator=g, dtype=torch.float64, requires_grad=which == "weight")
    targets = torch.randint(0, 30, (12,), generator=g)
    wrt = hidden if which == "hidden" else weight
    (expected,) = torch.autograd.grad(reference(hidden, weight, targets), wrt)
    (got,) = torch.autograd.grad(linear_cross_entropy(hidden, weight, targets, chunk_size=5), wrt)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_second_backward_is_refused_not_silently_wrong() -> None:
    """backward scales the stored gradients in place, so a retained graph must not be reused."""
    hidden = torch.randn(6, 3, requires_grad=True)
    weight = torch.randn(10, 3, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.randint(0, 10, (6,)), chunk_size=4)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def test_negative_chunk_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(torch.randn(2, 3), torch.randn(4, 3), torch.zeros(2, dtype=torch.long), chunk_size=-1)


def largest_cpu_allocation(fn) -> int:
    """Bytes of the largest single CPU allocation made by ``fn()`` (torch.profiler, profile_memory=True)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((event.self_cpu_memory_usage for event in prof.events()), default=0)


def test_chunked_loss_never_allocates_the_full_logits() -> None:
    """The point of chunking: no (N, V) tensor, neither logits nor their gradient (the plain loss has both)."""
    from lit_ffn.loss import release_workspace

    g = torch.Generator().manual_seed(7)
    n, d, v, chunk = 512, 16, 2000, 64
    hidden = torch.randn(n, d, generator=g, requires_grad=True)
    weight = torch.randn(v, d, generator=g, requires_grad=True)
    targets = torch.randint(0, v, (n,), generator=g)
    full_logits = n * v * 4

    def step(chunk_size: int) -> None:
        linear_cross_entropy(hidden, weight, targets, chunk_size).backward()

    release_workspace()  # so the chunked call allocates its (chunk, V) buffer inside the profiled region
    assert largest_cpu_allocation(lambda: step(0)) >= full_logits
    chunked_peak = largest_cpu_allocation(lambda: step(chunk))
    assert 0 < chunked_peak <= chunk * v * 4
    release_workspace()


def test_workspace_made_under_inference_mode_serves_training() -> None:
    """Lightning validates under torch.inference_mode(); the kept CPU buffer must still work in training after."""
    from lit_ffn.loss import release_workspace

    g = torch.Generator().manual_seed(8)
    hidden = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(60, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 60, (30,), generator=g)
    release_workspace()
    with torch.inference_mode():
        linear_cross_entropy(hidden, weight, targets, chunk_size=16)
    got = torch.autograd.grad(linear_cross_entropy(hidden, weight, targets, chunk_size=16), (hidden, weight))
    torch.testing.assert_close(got, torch.autograd.grad(reference(hidden, weight, targets), (hidden, weight)))
    release_workspace()


def test_fp16_weight_gradient_keeps_its_softmax_part() -> None:
    """Under fp16 (``16-mixed``) 1/N must stay out of the fp16 operand of ∂W: with N = 2048 and
    V = 16384, r/s = 1/(N·s) ≈ 3e-8 is below fp16's smallest subnormal and used to zero the
    softmax part of ∂W (the rows of tokens that are not targets were ~30% off)."""
    g = torch.Generator().manual_seed(7)
    n, d, v = 2048, 16, 16384
    hidden = torch.randn(n, d, generator=g).to(torch.float16).requires_grad_()
    weight = (torch.randn(v, d, generator=g) * 0.05).to(torch.float16).requires_grad_()
    targets = torch.randint(0, v // 2, (n,), generator=g)  # rows v//2… are never targets: softmax part only
    ref_h = hidden.detach().double().requires_grad_()
    ref_w = weight.detach().double().requires_grad_()
    reference(ref_h, ref_w, targets).backward()
    linear_cross_entropy(hidden, weight, targets, chunk_size=1024).backward()
    assert weight.grad.dtype == torch.float16

    def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
        return ((got.double() - expected).norm() / expected.norm()).item()

    assert relative_error(weight.grad[v // 2 :], ref_w.grad[v // 2 :]) < 1e-2
    assert relative_error(weight.grad, ref_w.grad) < 1e-2
    assert relative_error(hidden.grad, ref_h.grad) < 1e-2
