"""``scripts/gpu_check.sh`` (``lit_ffn.bench.gpu_check``) in CPU mode: the check runs end to end, says
CPU mode, leaves every GPU target "not yet measured", and a failing item is a FAIL line and exit 1.

The 2-process fits (items ``fit-ddp``, ``fit-fsdp2``) take minutes on 2 cores — every process pays
~10 s of imports, and each fit is two processes — so the end-to-end test runs the other items
(``--items``); the fits' command line is parsed here with ``lit_ffn fit``'s own parser and their
comparison is tested on records, and a full CPU-mode run of all items is committed as
``docs/results/gpu_check.md``.  No timing is asserted anywhere.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lit_ffn.bench.gpu_check import cli, fits, loss_cost, sdpa
from lit_ffn.bench.gpu_check.items import Context
from lit_ffn.bench.gpu_check.plan import make_plan, write_shape_config
from lit_ffn.bench.gpu_check.report import render
from lit_ffn.model import Block

IN_PROCESS = ["sdpa", "throughput", "loss", "ffn", "gates"]


def _argv(tiny_dataset: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--cpu",
        "--data-dir",
        str(tiny_dataset),
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "gpu_check.md"),
        "--json",
        str(tmp_path / "gpu_check.json"),
        "--compile-backend",
        "eager",  # dynamo traces the blocks; inductor's C++ build would take ~1 min here
        *extra,
    ]


def test_cpu_mode_end_to_end(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = _argv(tiny_dataset, tmp_path, "--items", *IN_PROCESS)
    code, results = cli.check(argv)
    out = capsys.readouterr().out
    report = (tmp_path / "gpu_check.md").read_text()
    assert code == 0, report
    # the closing lines: one PASS per item, in the order they ran, on stdout and at the end of the report
    closing = [line for line in out.splitlines() if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP")]
    assert [line.split()[:2] for line in closing] == [["PASS", key] for key in IN_PROCESS]
    assert report.rstrip().endswith("```") and all(line in report for line in closing)
    # a CPU-mode report says so first, and measures no GPU target
    assert "**CPU mode — not a GPU result.**" in report.split("\n| | |")[0]
    targets = report.split("## GPU targets")[1].split("\n## ")[0]
    rows = [line for line in targets.splitlines() if line.startswith("| ") and "target |" not in line]
    assert len(rows) == 4 and all("not yet measured" in row for row in rows)
    for key in IN_PROCESS:
        assert f"| `{key}` |" in report and f"## `{key}`" in report
    assert "| commit |" in report and "| versions |" in report and "--items sdpa throughput" in report
    # the throughput item compared all three rows on the same batch: the same first loss
    assert "| lit_ffn SwiGLU | eager |" in report and "| transformers Qwen3ForCausalLM | eager |" in report
    assert "| lit_ffn SwiGLU | compiled (eager) |" in report
    assert "flash (CPU) kernel with sdpa_gqa=native" in report
    assert [r["key"] for r in json.loads((tmp_path / "gpu_check.json").read_text())["results"]] == IN_PROCESS

    # the same results rendered as a GPU report (the path a GPU run takes): no banner, every target judged
    gpu_plan = dataclasses.replace(make_plan(cli.build_parser().parse_args(argv), vocab_size=384), mode="gpu")
    gpu_report = render({}, gpu_plan, results, [], 1.0)
    assert "CPU mode" not in gpu_report
    judged = gpu_report.split("## GPU targets")[1].split("\n## ")[0]
    assert judged.count("| met: ") + judged.count("| NOT met: ") == 4, judged


def test_failures_are_fail_lines_and_exit_1(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A wrong loss is caught by the loss item's own comparison; an exception in an item is its FAIL line;
    the other items still run.  --sdpa-force-math makes the SDPA item take its kv-expansion fallback."""
    real = loss_cost.linear_cross_entropy

    def off_by_a_bit(hidden, weight, targets, chunk):
        loss = real(hidden, weight, targets, chunk)
        return loss * 1.001 if chunk else loss

    monkeypatch.setattr(loss_cost, "linear_cross_entropy", off_by_a_bit)

    def broken(ctx):
        raise RuntimeError("simulated failure\nsecond line")

    items = [cli.Item(("ffn",), "broken", cli.single(broken))] + [i for i in cli.ITEMS if i.keys[0] != "ffn"]
    monkeypatch.setattr(cli, "ITEMS", tuple(items))
    code = cli.main(_argv(tiny_dataset, tmp_path, "--items", "sdpa", "loss", "ffn", "--sdpa-force-math"))
    out = capsys.readouterr().out
    assert code == 1
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))}
    assert lines["sdpa"].startswith("PASS") and "model.sdpa_gqa=expand runs flash (CPU)" in lines["sdpa"]
    assert lines["loss"].startswith("FAIL") and "chunked ≠ plain" in lines["loss"]
    assert lines["ffn"].startswith("FAIL") and lines["ffn"].endswith("RuntimeError: simulated failure")
    assert "sdpa_gqa: expand" in (tmp_path / "work" / "shape.yaml").read_text()  # later models use the fix
    assert "**FAIL**" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--items", "bogus"], "--items bogus: unknown item"),
        (["--fit-steps", "4", "--resume-step", "4"], "--resume-step 4 must be smaller than --fit-steps 4"),
        (["--budget-s", "0"], "--budget-s must be > 0"),
    ],
)
def test_bad_arguments_are_one_line(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    assert cli.main(_argv(tiny_dataset, tmp_path, *extra)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gpu_check: error:") and message in line


def test_sdpa_decision_and_kernel_names() -> None:
    assert (
        sdpa.kernel_of({"aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention"}) == "flash"
    )
    assert sdpa.kernel_of({"aten::_scaled_dot_product_attention_math"}) == "math"
    assert sdpa.kernel_of({"aten::mm"}) is None
    assert sdpa.decide("flash", "flash")[0] == "native"
    assert sdpa.decide("math", "cuDNN") == (
        "expand",
        "enable_gqa runs math; with the kv heads repeated SDPA runs cuDNN",
    )
    mode, why = sdpa.decide("math", "math")
    assert mode == "native" and why.startswith("only the math kernel runs")


def _records(losses: list[float], resumed_losses: list[float], resume: int, batches: list[str] | None = None) -> list:
    batches = batches or [f"b{i}" for i in range(len(losses))]
    rows = [{"step": i, "batch": f"b{i}", "resumed": False, "loss": x.hex()} for i, x in enumerate(losses)]
    rows += [
        {"step": resume + i, "batch": batches[resume + i], "resumed": True, "loss": x.hex()}
        for i, x in enumerate(resumed_losses)
    ]
    rows += [{"val_step": len(losses), "val_loss": (1.5).hex(), "resumed": flag} for flag in (False, True)]
    return rows


def test_resume_comparison() -> None:
    losses = [5.0, 4.9, 4.8, 4.7]
    problems, data = fits.compare(_records(losses, losses[2:], 2), resume_step=2, steps=4, tolerance=0.0)
    assert problems == [] and data["max_loss_difference"] == 0 and data["steps_compared"] == 2
    off = [4.8, 4.7 + 1e-6]
    assert "loss differs by up to" in fits.compare(_records(losses, off, 2), 2, 4, tolerance=0.0)[0][0]
    assert fits.compare(_records(losses, off, 2), 2, 4, tolerance=1e-5)[0] == []
    other = _records(losses, losses[2:], 2, batches=["b0", "b1", "b2", "x3"])
    assert fits.compare(other, 2, 4, 0.0)[0] == ["other batches at steps [3]"]
    missing = fits.compare(_records(losses, losses[2:3], 2), 2, 4, 0.0)[0]
    assert missing == ["resumed steps [2] are not 2…3"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2", "fsdp"])
def test_fit_command_lines_parse(tiny_dataset: Path, tmp_path: Path, strategy: str) -> None:
    """The fits' arguments are valid ``lit_ffn fit`` arguments (FSDP1's too: parsing needs no GPU)."""
    from lit_ffn.bench.settings import fit_parser

    args = _argv(tiny_dataset, tmp_path)
    namespace = cli.build_parser().parse_args(args)
    cli.check_args(namespace)
    plan = make_plan(namespace, vocab_size=384)
    ctx = Context(plan, tmp_path, tiny_dataset, write_shape_config(plan, tmp_path / "shape.yaml"))
    (tmp_path / strategy).mkdir()
    argv = fits.fit_args(ctx, strategy, tmp_path / strategy)
    assert argv[0] == "fit"
    config = fit_parser().parse(argv[1:])  # lit_ffn fit's parser, built once
    expected = {
        "ddp": "DDPStrategy",
        "fsdp2": "FSDP2Strategy",
        "fsdp": "FSDPStrategy",
    }[strategy]
    assert config.trainer.strategy.class_path.endswith(expected)
    assert (
        config.trainer.max_steps == 20 and str(config.trainer.devices) == "2" and config.trainer.precision == "32-true"
    )
    assert config.model.activation_checkpointing is (strategy != "fsdp") and config.model.dim == 64
    assert config.checkpoint.every_n_train_steps == 10 and config.checkpoint.save_top_k == -1
    if strategy == "fsdp":  # FSDP1 checkpoints the blocks by its own policy, after wrapping
        assert config.trainer.strategy.init_args.activation_checkpointing_policy == {Block}
    logger = config.trainer.callbacks[-1]
    assert logger.class_path == "lit_ffn.bench.gpu_check.recorder.StepLog"
    assert logger.init_args.out_dir == str(tmp_path / strategy / "records")
