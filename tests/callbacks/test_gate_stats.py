"""lit_ffn.callbacks.gate_stats: the on-device reductions behind the gate-statistics callback."""

from __future__ import annotations

import statistics

import pytest
import torch

from lit_ffn.callbacks import gate_stats


def stats_dict(sums: torch.Tensor, maxes: torch.Tensor) -> dict[str, float]:
    return dict(zip(gate_stats.STATS, gate_stats.summarize(sums, maxes).tolist()))


def reference(values: list[float], threshold: float) -> dict[str, float]:
    """The same statistics by plain Python on floats (an independent implementation)."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "frac_near_zero": sum(abs(v) < threshold for v in values) / len(values),
        "frac_negative": sum(v < 0 for v in values) / len(values),
        "max_abs": max(abs(v) for v in values),
        "min": min(values),
        "max": max(values),
    }


def test_known_answers_on_a_small_tensor() -> None:
    x = torch.tensor([[-2.0, -0.5, 0.0], [0.001, 1.0, 3.0]])
    got = stats_dict(*gate_stats.moments(x, threshold=0.01))
    # mean 1.501/6; two of six values are near zero (0, 0.001), two negative; extremes -2 and 3
    assert got["mean"] == pytest.approx(1.501 / 6)
    assert got["std"] == pytest.approx(statistics.pstdev([-2.0, -0.5, 0.0, 0.001, 1.0, 3.0]), rel=1e-6)
    assert got["frac_near_zero"] == pytest.approx(2 / 6)
    assert got["frac_negative"] == pytest.approx(2 / 6)
    assert (got["max_abs"], got["min"], got["max"]) == (3.0, -2.0, 3.0)


def test_max_abs_comes_from_the_negative_side_when_it_is_larger() -> None:
    got = stats_dict(*gate_stats.moments(torch.tensor([-5.0, 1.0, 2.0]), threshold=0.0))
    assert (got["max_abs"], got["min"], got["max"], got["frac_near_zero"]) == (5.0, -5.0, 2.0, 0.0)


def test_combining_micro_batches_and_ranks_is_exact() -> None:
    """Sums add and maxima max: any split gives the statistics of the whole."""
    g = torch.Generator().manual_seed(0)
    whole = torch.randn(7, 33, 17, generator=g) * 0.7 + 0.2
    threshold = 0.05
    parts = [whole[:2], whole[2:3], whole[3:7, :10], whole[3:7, 10:]]  # uneven "micro-batches"
    moments = [gate_stats.moments(p, threshold) for p in parts]
    # two "ranks", each combining its micro-batches, then an all-reduce (sum / max) between them
    rank0 = gate_stats.combine([m[0] for m in moments[:2]], [m[1] for m in moments[:2]])
    rank1 = gate_stats.combine([m[0] for m in moments[2:]], [m[1] for m in moments[2:]])
    sums, maxes = rank0[0] + rank1[0], torch.maximum(rank0[1], rank1[1])
    got = stats_dict(sums, maxes)
    expected = reference(whole.double().flatten().tolist(), threshold)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert sums[0].item() == whole.numel()


def test_std_of_a_nearly_constant_tensor_is_accurate() -> None:
    """The case of DynamicGEGLU's α at init: a spread 1e-6 around 0.75.

    A float32 Σx² − n·mean² would report a std of order 1e-4 here (the
    cancellation error of 0.56·1e-7 under a square root); the centred
    per-micro-batch variance carried in float64 must get it to 1%.
    """
    g = torch.Generator().manual_seed(1)
    x = (0.75 + 1e-6 * torch.randn(4, 65536, generator=g, dtype=torch.float64)).float()
    moments = [gate_stats.moments(chunk, 0.01) for chunk in x]
    got = stats_dict(*gate_stats.combine([m[0] for m in moments], [m[1] for m in moments]))
    true_std = x.double().std(correction=0).item()
    assert got["std"] == pytest.approx(true_std, rel=0.01)
    naive = (x.square().mean() - x.mean().square()).clamp_min(0).sqrt().item()  # what the test guards against
    assert abs(naive - true_std) > 0.1 * true_std


def test_constant_tensor_has_zero_std_to_float32_resolution() -> None:
    got = stats_dict(*gate_stats.moments(torch.full((3, 1000, 1), 0.6377), threshold=0.01))
    assert got["std"] < 2e-7 * 0.6377 and got["mean"] == pytest.approx(0.6377)


def test_bfloat16_input_is_reduced_in_float32() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 256, generator=g).to(torch.bfloat16)
    sums, maxes = gate_stats.moments(x, 0.1)
    assert sums.dtype == torch.float64 and maxes.dtype == torch.float64
    got = stats_dict(sums, maxes)
    expected = reference(x.double().flatten().tolist(), 0.1)  # of the bf16 values themselves
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key


def test_empty_tensor_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        gate_stats.moments(torch.empty(0, 4), 0.01)
    with pytest.raises(ValueError):
        gate_stats.combine([], [])


def test_subsample_is_a_strided_copy_of_bounded_size() -> None:
    x = torch.arange(10_000, dtype=torch.float32).reshape(100, 100)
    sample = gate_stats.subsample(x, 64)
    assert sample.shape == (64,) and sample.dtype == torch.float32
    assert sample[1] - sample[0] == 10_000 // 64  # evenly strided over the flattened tensor
    assert sample.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()  # a copy, not a view
    small = gate_stats.subsample(torch.ones(5), 64)
    assert small.shape == (5,)
