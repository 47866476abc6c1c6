"""`lit_ffn bench` on CPU with a tiny config: report structure, fair comparison, clear errors (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn.cli import main
from tests.conftest import TINY_VOCAB

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "trainer": {"precision": "32-true", "gradient_clip_val": 1.0},
    "model": {
        "ffn": {"class_path": "lit_ffn.ffn.GEGLU"},
        "vocab_size": TINY_VOCAB,
        "dim": 32,
        "n_layers": 2,
        "n_heads": 2,
        "n_kv_heads": 1,
        "head_dim": 16,
        "loss_chunk_size": 48,  # several chunks per step
    },
    "data": {"seq_len": 16, "batch_size": 4},
}


@pytest.fixture()
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_bench_compare_hf_report(tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = [
        "bench",
        "--config",
        str(tiny_config),
        "--ffn",
        "geglu",
        "dynamic_geglu",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--compare-hf",
        "--json",
        str(out_json),
        "--markdown",
        str(out_md),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    report = json.loads(out_json.read_text())

    names = [r["name"] for r in report["results"]]
    # the config's GEGLU is replaced by --ffn; SwiGLU is added as transformers' counterpart
    assert names == ["lit_ffn GEGLU", "lit_ffn DynamicGEGLU", "lit_ffn SwiGLU", "transformers Qwen3ForCausalLM"]
    tokens_per_step = 4 * 16
    for result in report["results"]:
        assert result["tokens_per_step"] == tokens_per_step
        assert result["timed_steps"] == 2 and result["tokens_timed"] == 2 * tokens_per_step
        steps = result["step_time_s"]
        assert 0 < steps["min"] <= steps["p25"] <= steps["median"] <= steps["p75"] <= steps["max"]
        assert result["tokens_per_s"] == pytest.approx(tokens_per_step / steps["median"])
        assert 0 < result["mfu"] and result["flops_per_token"] > 0
        assert result["peak_mem_bytes"] is not None
    lit, hf = report["results"][2], report["results"][3]
    # same shape, same FLOP count, same starting weights and data: the same first loss
    assert hf["params"] == lit["params"] and hf["flops_per_token"] == lit["flops_per_token"]
    assert hf["optimizer"] == lit["optimizer"] == "AdamW(fused=True)"  # what lit_ffn fit uses on CPU
    assert hf["first_loss"] == pytest.approx(lit["first_loss"], abs=1e-4)
    assert hf["first_loss"] == pytest.approx(torch.log(torch.tensor(float(TINY_VOCAB))).item(), abs=0.1)
    (ratio,) = report["ratios"]
    assert ratio["lit_ffn"] == "lit_ffn SwiGLU" and ratio["peer"] == "transformers Qwen3ForCausalLM"
    assert ratio["tokens_per_s_ratio"] == pytest.approx(lit["tokens_per_s"] / hf["tokens_per_s"])
    assert report["gradient_clip_val"] == 1.0 and report["precision"] == "32-true"
    assert report["versions"]["torch"] == torch.__version__.split("+")[0]
    assert "embedding lookup excluded" in report["flop_formula"]

    markdown = out_md.read_text()
    assert markdown in capsys.readouterr().out
    table = [line for line in markdown.splitlines() if line.startswith(("| lit_ffn", "| transformers"))]
    assert len(table) == 4
    assert "lit_ffn SwiGLU / transformers Qwen3ForCausalLM" in markdown


def test_bench_compare_litgpt_same_model(tiny_config: Path, tmp_path: Path) -> None:
    """litgpt's GPT (Qwen3 config) gets lit_ffn's initial weights through litgpt's own converter: same
    parameter count and the same first and last losses as lit_ffn and transformers (same data, same AdamW)."""
    pytest.importorskip("litgpt")
    from lit_ffn.bench import bench

    argv = ["--config", str(tiny_config), "--ffn", "swiglu", "--steps", "2", "--warmup", "1", "--device", "cpu"]
    report = bench([*argv, "--compare-hf", "--compare-litgpt"], log=lambda _: None)
    lit, hf, gpt = report["results"]
    assert gpt["name"] == "litgpt GPT (Qwen3 config)" and gpt["impl"] == "litgpt"
    assert gpt["params"] == lit["params"] == hf["params"] and gpt["optimizer"] == lit["optimizer"]
    # same weights: the first step's loss agrees; same optimizer and data: so do the later steps'
    assert gpt["first_loss"] == pytest.approx(lit["first_loss"], abs=1e-5)
    assert gpt["last_loss"] == pytest.approx(lit["last_loss"], abs=1e-4)
    assert [r["peer"] for r in report["ratios"]] == [hf["name"], gpt["name"]]
    assert report["ratios"][1]["tokens_per_s_ratio"] == pytest.approx(lit["tokens_per_s"] / gpt["tokens_per_s"])
    assert report["versions"]["litgpt"] is not None


def test_bench_compare_litgpt_missing(tiny_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without litgpt, --compare-litgpt is one line that says how to install it."""
    import sys

    from lit_ffn.bench import bench
    from lit_ffn.errors import UserError

    for name in ["litgpt", "litgpt.config", *(m for m in sys.modules if m.startswith("litgpt."))]:
        monkeypatch.setitem(sys.modules, name, None)  # import litgpt (or a submodule) -> ImportError
    with pytest.raises(UserError, match="pip install --no-deps litgpt==0.5.13"):
        bench(["--config", str(tiny_config), "--steps", "1", "--compare-litgpt", "--device", "cpu"], log=lambda _: None)


def test_bench_config_ffn_bf16_and_plain_loss(tiny_config: Path, tmp_path: Path) -> None:
    """Without --ffn the config's FFN is timed; precision and loss chunking can be overridden."""
    from lit_ffn.bench import bench

    report = bench(
        [
            "--config",
            str(tiny_config),
            "--config",
            str(REPO / "configs" / "ffn" / "geglu_tanh.yaml"),
            "--steps",
            "1",
            "--warmup",
            "1",
            "--precision",
            "bf16-mixed",
            "--loss-chunk-size",
            "0",
            "5",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
            "--peak-tflops",
            "1",
        ],
        log=lambda _: None,
    )
    plain, chunked = report["results"]
    assert plain["name"] == "lit_ffn GEGLU-approximate=tanh (plain loss)" and plain["loss_chunk_size"] == 0
    assert chunked["name"] == "lit_ffn GEGLU-approximate=tanh (loss chunk 5)" and chunked["loss_chunk_size"] == 5
    assert chunked["first_loss"] == pytest.approx(plain["first_loss"], abs=1e-3)  # same model, same data
    assert report["precision"] == "bf16-mixed" and plain["tokens_per_step"] == 16 and report["peak_flops"] == 1e12
    assert report["peak_flops_source"] == "--peak-tflops" and report["ratios"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ffn", "swiglo"], "--ffn 'swiglo': not a built-in FFN"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--warmup", "0"], "--warmup must be at least 1"),
        (["--loss-chunk-size", "-2"], "--loss-chunk-size must be >= 0"),
        (["--config", "missing.yaml"], "missing.yaml: no such file"),
    ],
)
def test_bench_user_errors_are_one_line(
    tiny_config: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    assert main(["bench", "--config", str(tiny_config), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith("lit_ffn bench: error:") and message in line


def test_bench_output_paths_are_checked_before_benchmarking(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--json/--markdown: missing directories are created up front; a bad path fails at once, in one line."""
    from lit_ffn.bench import check_output_path
    from lit_ffn.errors import UserError

    out = tmp_path / "new" / "dir" / "bench.json"
    check_output_path(str(out), "--json")
    assert out.parent.is_dir() and not out.exists()
    check_output_path(None, "--json")  # not asked for: nothing to check

    with pytest.raises(UserError, match="is a directory"):
        check_output_path(str(tmp_path), "--markdown")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot create the directory"):
        check_output_path(str(tmp_path / "a_file" / "bench.md"), "--markdown")

    # through the CLI: the error comes before the config is even read (no benchmark runs)
    assert main(["bench", "--config", "never_read.yaml", "--json", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("lit_ffn bench: error: --json") and "is a directory" in line


def test_bench_bad_model_value_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = dict(TINY, model={**TINY["model"], "dim": "wide"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", "--config", str(path)]) == 2
    assert "model.dim" in capsys.readouterr().err


def test_hf_weight_names_cover_the_whole_model() -> None:
    """Every lit_ffn SwiGLU weight has a transformers name, and the names are those of Qwen3ForCausalLM."""
    transformers = pytest.importorskip("transformers")
    from lit_ffn.bench import hf_state_dict
    from lit_ffn.ffn import SwiGLU
    from lit_ffn.model import Decoder

    ours = Decoder(
        ffn=SwiGLU, vocab_size=64, dim=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8, tie_embeddings=False
    )
    config = transformers.Qwen3Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=ours.layers[0].ffn.hidden_dim,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        tie_word_embeddings=False,
    )
    assert set(hf_state_dict(ours)) == set(transformers.Qwen3ForCausalLM(config).state_dict())


def test_out_of_memory_is_reported_and_the_others_still_run(tiny_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that runs out of memory in its warm-up becomes an 'out of memory' row (sweeps over --batch-size)."""
    from lit_ffn import bench as bench_module

    real_step = bench_module.Runner.step

    def step(self, tokens, targets):
        if self.loss_chunk_size == 0:
            raise torch.OutOfMemoryError("simulated")
        return real_step(self, tokens, targets)

    monkeypatch.setattr(bench_module.Runner, "step", step)
    report = bench_module.bench(
        [
            "--config",
            str(tiny_config),
            "--loss-chunk-size",
            "0",
            "16",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--peak-tflops",
            "1",
        ],
        log=lambda _: None,
    )
    plain, chunked = report["results"]
    assert plain["error"] == "out of memory" and plain["timed_steps"] == 0 and "tokens_per_s" not in plain
    assert "error" not in chunked and chunked["timed_steps"] == 1
    assert "| lit_ffn GEGLU (plain loss) | 0.03M | out of memory |" in bench_module.render_markdown(report)


def test_fit_with_bf16_mixed_gradient_clipping_and_fused_adamw(tiny_dataset: Path, tmp_path: Path) -> None:
    """What the bench times must also train: bf16-mixed + gradient clipping with the (fused) AdamW fit uses.

    Lightning's mixed-precision plugin raises for fused optimizers when clipping (Lightning issue #21435);
    LitDecoder.configure_optimizers works around it."""
    from tests.conftest import tiny_fit_args

    args = tiny_fit_args(
        tiny_dataset, tmp_path, "--trainer.precision=bf16-mixed", "--trainer.gradient_clip_val=0.5", steps=2
    )
    assert main(args) == 0
    assert (tmp_path / "runs" / "tiny").exists()


def test_cpu_peak_memory_below_the_floor_is_shown_as_zero() -> None:
    """A resident-set difference a little below zero (pages reused from an earlier model) prints as the floor,
    never as '-0.00 GiB'."""
    from lit_ffn.bench.report import _gib

    assert _gib(-4096) == "0.00 GiB"
    assert _gib(3 * 2**29) == "1.50 GiB"
    assert _gib(None) == "n/a"
