"""`lit_ffn bench --profile`: the step's time split into groups (no timing thresholds: shares and attribution)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.profiler import ProfilerActivity, profile

from lit_ffn.bench.profile import GROUPS, _annotated, group_times, loss_free_bounds, module_group, render_bounds
from tests.bench.test_bench import TINY


@pytest.fixture()
def swiglu_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "ffn": {"class_path": "lit_ffn.ffn.SwiGLU"}}}))
    return path


def test_bench_profile_shares_sum_to_one(swiglu_config: Path) -> None:
    """Every model's shares add up to 1, and each model spends time in every part it has."""
    from lit_ffn.bench import bench

    argv = ["--config", str(swiglu_config), "--steps", "1", "--warmup", "1", "--compare-hf", "--device", "cpu"]
    report = bench([*argv, "--profile"], log=lambda _: None)
    rows = report["profile"]
    assert [row["name"] for row in rows] == ["lit_ffn SwiGLU", "transformers Qwen3ForCausalLM"]
    for row in rows:
        shares = row["shares"]
        assert sum(shares[g] for g in GROUPS) == pytest.approx(1.0, abs=1e-9)
        for group in ("FFN", "attention", "head+loss", "norms+rope", "optimizer"):
            assert shares[group] > 0, (row["name"], group)
        assert shares["total_cpu_ms"] > 0
    (bound,) = report["loss_free_bounds"]  # one lit_ffn SwiGLU row, one peer
    lit, hf = report["results"]
    rest = lit["step_time_s"]["median"] * (1 - rows[0]["shares"]["head+loss"])
    assert bound["tokens_per_s_ratio_bound"] == pytest.approx(hf["step_time_s"]["median"] / rest)
    assert bound["tokens_per_s_ratio_bound"] > report["ratios"][0]["tokens_per_s_ratio"]  # a bound, above the ratio


def test_module_groups_of_the_three_libraries() -> None:
    """lit_ffn's, transformers' and litgpt's attribute names map onto the same groups."""
    blocks = nn.ModuleList([nn.Module()])
    assert module_group("model.layers.0.ffn", nn.Linear(2, 2), None) == "FFN"
    assert module_group("model.layers.0.mlp", nn.Linear(2, 2), None) == "FFN"
    assert module_group("transformer.h.0.attn", nn.Linear(2, 2), None) == "attention"
    assert module_group("model.layers.0.self_attn", nn.Linear(2, 2), None) == "attention"
    assert module_group("model.layers.0.self_attn.q_norm", nn.RMSNorm(2), None) == "norms+rope"
    assert module_group("model.rotary_emb", nn.Identity(), None) == "norms+rope"
    assert module_group("model.layers.0", blocks[0], blocks) == "other"
    assert module_group("model.layers.0.ffn.inner.0", nn.Linear(2, 2), nn.ModuleList()) is None
    assert module_group("model.embed", nn.Embedding(2, 2), None) is None


def test_backward_goes_to_the_forward_group() -> None:
    """The backward of an FFN's matmuls is counted as FFN (linked through the autograd sequence number):
    without that link the FFN would get only its forward, about a third of the matmul work."""
    torch.manual_seed(0)
    model = nn.Module()
    model.ffn = nn.Linear(256, 256)
    x = torch.randn(512, 256, requires_grad=True)
    with _annotated(model), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            model.ffn(x).sum().backward()
    times = group_times(list(prof.events()))
    assert times["FFN"] / sum(times.values()) > 0.6
    assert times["optimizer"] == 0 and times["attention"] == 0


def _row(name: str, impl: str, median: float, ffn: str = "SwiGLU") -> dict:
    return {"name": name, "impl": impl, "ffn": ffn, "step_time_s": {"median": median}}


def test_loss_free_bound_is_amdahls_law() -> None:
    """A lit_ffn step of 100 ms of which 40% is head+loss leaves 60 ms: a 120 ms peer bounds the ratio at 2×.
    Only lit_ffn SwiGLU rows are bounded, against every peer that ran and was profiled."""
    results = [
        _row("lit_ffn SwiGLU", "lit_ffn", 0.100),
        _row("lit_ffn GEGLU", "lit_ffn", 0.100, ffn="GEGLU"),
        _row("transformers", "transformers", 0.120),
        _row("litgpt", "litgpt", 0.090),
        {"name": "broken peer", "impl": "litgpt", "ffn": "SwiGLU", "error": "out of memory"},
    ]
    shares = {"head+loss": 0.4}
    profile_rows = [{"name": row["name"], "shares": shares} for row in results if "error" not in row]
    bounds = loss_free_bounds(results, profile_rows)
    assert [(b["lit_ffn"], b["peer"]) for b in bounds] == [
        ("lit_ffn SwiGLU", "transformers"),
        ("lit_ffn SwiGLU", "litgpt"),
    ]
    assert bounds[0]["tokens_per_s_ratio_bound"] == pytest.approx(2.0)
    assert bounds[1]["tokens_per_s_ratio_bound"] == pytest.approx(1.5)
    assert bounds[0]["step_time_without_head_loss_s"] == pytest.approx(0.060)
    text = render_bounds(bounds)
    assert "at most **2.00×**" in text and "40.0% of its step" in text and "60.0 ms" in text
    assert render_bounds([]) == ""
