"""The learning-rate schedule: warm-up to the peak once, cosine to exactly the floor at the last step."""

from __future__ import annotations

import math

import pytest

from lit_ffn.training.optim import warmup_cosine


@pytest.mark.parametrize(("warmup", "steps"), [(4, 30), (1, 10), (10, 400)])
def test_warmup_then_cosine_to_the_floor(warmup: int, steps: int) -> None:
    r = 0.1
    m = [warmup_cosine(t, warmup, steps, r) for t in range(steps)]
    assert m[0] == pytest.approx(1 / warmup)
    assert m[warmup - 1] == pytest.approx(1.0)  # the peak, at the end of the warm-up
    assert m.count(max(m)) == 1  # ... used once
    cosine = r + (1 - r) * 0.5 * (1 + math.cos(math.pi / (steps - warmup)))
    assert m[warmup] == pytest.approx(cosine) and m[warmup] < 1.0
    assert m[steps - 1] == pytest.approx(r)  # the last step trains at exactly the floor
    assert all(a > b for a, b in zip(m[warmup - 1 :], m[warmup:]))  # strictly decreasing after the peak
    assert warmup_cosine(steps + 5, warmup, steps, r) == pytest.approx(r)  # past the end: the floor


def test_without_warmup_the_first_step_is_the_peak() -> None:
    m = [warmup_cosine(t, 0, 5, 0.0) for t in range(5)]
    assert m == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0])
    assert warmup_cosine(0, 0, 1, 0.1) == 1.0  # a one-step run: the peak
