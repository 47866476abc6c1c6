"""The paper protocol config and `lit_ffn params` (parameter counts on the meta device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_ffn.cli import main as cli_main
from lit_ffn.experiments.params import count_parameters, main, variant_counts
from lit_ffn.ffn import BUILTIN_FFNS

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "paper" / "qwen3_83m.yaml"


def test_paper_config_is_the_protocol(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(PAPER), "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    trainer, model, data = config["trainer"], config["model"], config["data"]
    # AdamW lr 3e-4, β = (0.9, 0.98), cosine (the module's only schedule), 400 steps
    assert model["lr"] == 3e-4 and model["betas"] == [0.9, 0.98] and trainer["max_steps"] == 400
    # batch 128 sequences of context 2048 per optimizer step
    assert data["seq_len"] == 2048
    # and validation every 50 optimizer steps, on any device count (Lightning's
    # micro-batch settings derived from them: tests/training/test_batch_plan.py)
    assert config["global_batch_size"] == 128 and config["val_every_n_steps"] == 50
    assert "accumulate_grad_batches" not in yaml.safe_load(PAPER.read_text())["trainer"]
    assert model["vocab_size"] == 151936 and model["tie_embeddings"] is True
    assert model["ffn"]["class_path"] == "lit_ffn.ffn.SwiGLU"
    assert trainer["precision"] == "bf16-mixed" and data["data_dir"] == "data/fineweb-10BT"


def swiglu_total_by_hand(v: int, d: int, layers: int, h: int, kv: int, e: int, hidden: int) -> int:
    """Qwen3 with SwiGLU and a tied embedding:
    V·D + L·(q, k, v, o + 2 RMSNorm(D) + q/k RMSNorm(E) + 3·D·hidden) + final RMSNorm(D)."""
    attention = d * h * e + 2 * d * kv * e + h * e * d
    block = attention + 2 * d + 2 * e + 3 * d * hidden
    return v * d + layers * block + d


def test_every_builtin_ffn_in_the_paper_model_is_83m_and_matched() -> None:
    base, rows = variant_counts([str(PAPER)], list(BUILTIN_FFNS))
    assert [name for name, _, _ in rows] == list(BUILTIN_FFNS)
    m = base[2]
    by_hand = swiglu_total_by_hand(
        m["vocab_size"],
        m["dim"],
        m["n_layers"],
        m["n_heads"],
        m["n_kv_heads"],
        m["head_dim"],
        hidden=base[1].hidden_dim,
    )
    assert base[1].total == by_hand  # the meta-device count is the formula's
    assert base[1].non_embedding == by_hand - m["vocab_size"] * m["dim"]
    totals = {name: count.total for name, count, _ in rows}
    for name, total in totals.items():
        assert abs(total - 83e6) <= 0.02 * 83e6, (name, total)  # 83M ± 2%, tied embedding counted once
    assert max(totals.values()) / min(totals.values()) - 1 < 0.01  # parameter-matched within 1%
    assert totals["swiglu"] == base[1].total


def test_params_table_matches_the_quickstart_counts(capsys: pytest.CaptureFixture) -> None:
    """The README's quickstart table (dim 96, 3 layers, 4,096-token vocabulary): 688,992 for the 2- and 3-matrix
    FFNs, +582 for DynamicGEGLU (LayerNorm(96) + s + b per layer), +1,536 for IsoGMLP (LayerNorm(256))."""
    names = ["relu", "swiglu", "geglu_tanh", "dynamic_geglu", "iso_gmlp"]
    assert main(["--config", str(REPO / "configs" / "quickstart.yaml"), "--ffn", *names]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| variant")
    }
    assert list(rows) == names
    total = {name: int(cells[4].split()[0].replace(",", "")) for name, cells in rows.items()}
    assert total["swiglu"] == total["relu"] == total["geglu_tanh"] == 688_992
    assert total["dynamic_geglu"] == 688_992 + 3 * (2 * 96 + 2)
    assert total["iso_gmlp"] == 688_992 + 3 * 2 * 256
    assert rows["relu"][1] == "384" and rows["swiglu"][1] == "256"  # hidden widths 3u and 2u
    assert "dim 96, 3 layers" in out and "spread of the totals" in out


def test_count_parameters_of_a_saved_config_section() -> None:
    model = {
        "vocab_size": 100,
        "dim": 16,
        "n_layers": 1,
        "n_heads": 2,
        "n_kv_heads": 1,
        "head_dim": 8,
        "tie_embeddings": False,
        "ffn": {"class_path": "lit_ffn.ffn.ReLUFFN", "init_args": {"hidden_dim": 24}},
    }
    count = count_parameters(model)
    assert count.ffn == 2 * 16 * 24 and count.hidden_dim == 24 and count.ffn_class == "ReLUFFN"
    # untied: the head (100·16) is a parameter of its own, counted in the total and the non-embedding count
    attention = 16 * 16 + 2 * 16 * 8 + 16 * 16 + 2 * 8
    assert count.total == 100 * 16 + (attention + 2 * 16 + count.ffn) + 16 + 100 * 16
    assert count.non_embedding == count.total - 100 * 16


def test_unknown_variant_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["--config", str(PAPER), "--ffn", "swiglu", "swigluu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown FFN 'swigluu'" in err[0] and "dynamic_geglu" in err[0]
