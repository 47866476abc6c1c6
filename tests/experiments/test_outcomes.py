"""What a finished run leaves behind (issue 23 (b), (c)): its final loss on every validation block, computed
independently here; a diverged confirmation run recorded as an outcome, never retried; a rerun of a finished
study rewrites the report without training anything."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from lit_ffn.experiments import ablate
from lit_ffn.experiments.study import DONE, Pair, Study
from tests.experiments.test_ablate import write_base_config


def independent_block_losses(run_dir: Path, data_dir: Path, seq_len: int) -> list[float]:
    """Every block of the val split read with litdata directly, scored with plain F.cross_entropy."""
    from litdata import StreamingDataset, TokensLoader

    from lit_ffn.inference.loading import load_model

    decoder = load_model(run_dir, need_tokenizer=False).decoder
    dataset = StreamingDataset(str(data_dir / "val"), item_loader=TokensLoader(block_size=seq_len + 1))
    losses = []
    with torch.no_grad():
        for i in range(len(dataset)):
            block = dataset[i].long()[None]
            logits = decoder.logits(decoder(block[:, :-1]))
            losses.append(float(F.cross_entropy(logits[0].double(), block[0, 1:])))
    return losses


def test_diverged_confirmation_runs_are_outcomes_and_final_losses_cover_every_block(
    tmp_path: Path, tiny_dataset: Path, monkeypatch, capsys
) -> None:
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out = tmp_path / "study"
    argv = ["--config", str(base), "--ffn", "swiglu", "relu", "--seeds", "0", "1", "--out", str(out)]
    launched = []

    def launcher(args: list[str], log_path: Path) -> int:
        launched.append(args)
        if "configs/ffn/relu.yaml" in args and "--seed_everything=1" in args:
            return ablate.DIVERGED_EXIT_CODE  # what `lit_ffn fit` returns when NonFiniteGuard stops a run
        return ablate.in_process_launcher(args, log_path)

    assert ablate.main(argv, launch=launcher) == 0  # a divergence is an outcome, not a failure
    study = Study.load(out)
    diverged = study.run_dir(Pair("relu", 1))
    record = json.loads((diverged / DONE).read_text())
    assert record["diverged"] is True and study.final_loss(Pair("relu", 1)) == math.inf
    md = (out / "results.md").read_text()
    assert "Diverged (an outcome" in md and "- relu seed 1" in md and "relu seed 1: started" not in md

    # the final loss is the last checkpoint's mean over every validation block, block by block
    run_dir = study.run_dir(Pair("swiglu", 0))
    final = json.loads((run_dir / "final_eval.json").read_text())
    expected = independent_block_losses(run_dir, tiny_dataset, 32)
    assert final["blocks"] == len(expected) == len(final["block_losses"])
    assert torch.allclose(torch.tensor(final["block_losses"]), torch.tensor(expected), rtol=1e-5)
    assert json.loads((run_dir / DONE).read_text())["final_val_loss"] == sum(final["block_losses"]) / len(expected)
    # the document each block starts in: end-of-document tokens counted in the blocks before it, read independently
    from litdata import StreamingDataset, TokensLoader

    eos = json.loads((tiny_dataset / "meta.json").read_text())["eos_id"]
    dataset = StreamingDataset(str(tiny_dataset / "val"), item_loader=TokensLoader(block_size=33))
    counts = [int((dataset[i] == eos).sum()) for i in range(len(dataset))]
    assert final["block_docs"] == [sum(counts[:i]) for i in range(len(counts))]
    assert len(set(final["block_docs"])) < len(counts)  # some documents span several blocks

    # a rerun trains nothing (the diverged run is not retried) and writes the same report
    (out / "results.md").unlink()
    launched.clear()
    assert ablate.main(argv, launch=launcher) == 0 and launched == []
    assert (out / "results.md").read_text() == md

    # a study trained by an older lit_ffn (299e505: DONE with the last logged val/loss, no final_eval.json,
    # checkpoints kept): a rerun scores each such run on the whole split, trains nothing, then reports
    old_done = {"finished": "2026-12-04 19:00:00", "wall_s": 1.0, "resumed": False, "detail": "step 8",
                "final_val_loss": 9.99, "diverged": False, "command": "lit_ffn fit"}  # fmt: skip
    for seed in (0, 1):
        old_dir = study.run_dir(Pair("swiglu", seed))
        (old_dir / "final_eval.json").unlink()
        (old_dir / DONE).write_text(json.dumps(old_done))
        assert (old_dir / "checkpoints" / "last.ckpt").exists()
    (out / "results.md").unlink()
    assert ablate.main(argv, launch=launcher) == 0 and launched == []
    again = json.loads((run_dir / "final_eval.json").read_text())
    assert again["block_losses"] == final["block_losses"]
    assert (study.run_dir(Pair("swiglu", 1)) / "final_eval.json").exists()
    from lit_ffn.experiments.runs import read_run

    assert read_run(Study.load(out), Pair("swiglu", 0)).loss == sum(final["block_losses"]) / len(expected)
    assert (out / "results.md").exists()
