"""`lit_ffn bench --profile`: the step's time split into groups (no timing thresholds: shares and attribution)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.profiler import ProfilerActivity, profile

from lit_ffn.bench.profile import GROUPS, _annotated, group_times, module_group
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
