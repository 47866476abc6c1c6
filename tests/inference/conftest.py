"""Fixtures of tests/inference: tiny lit_ffn checkpoints laid out as runs, a memorizing model, offline HF.

Everything is built here, offline: the tokenizer and dataset of ``tests/conftest.py`` (vocabulary 384),
models of width 32-64 with 2 layers, and checkpoints written in Lightning's layout
(``{"state_dict": {"model.…": tensor}, "hyper_parameters": <model section>, "global_step": …}``) inside
run directories (``<run>/config.yaml`` naming the dataset, ``<run>/checkpoints/last.ckpt``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lit_ffn.training.config import build_module
from tests.conftest import TINY_VOCAB

#: the tiny shape of every test model (GQA: 2 query heads share 1 key/value head)
TINY_MODEL = {"vocab_size": TINY_VOCAB, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16}
SEQ_LEN = 32
#: what the memorizing model is trained on (followed by EOS): Python's own documentation
STEPS = 80  # AdamW steps of the memorizing model
MEMORIZED = "A list is a mutable sequence, typically used to store collections of homogeneous items."


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and on a loaded 2-core machine two threads spin against
    the other load (measured: 12 tokens of a width-32 model took 6.3 s with 2 threads, 0.09 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No Hugging Face Hub access from these tests, and datasets' cache inside the test's tmp dir."""
    cache = tmp_path_factory.getbasetemp() / "hf_datasets_cache"
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    try:
        import datasets.config
    except ImportError:
        return
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)


def model_section(ffn: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A run config's ``model`` section for the tiny shape."""
    return {"ffn": ffn, **TINY_MODEL, **overrides}


def perturbed_(module: torch.nn.Module, seed: int) -> None:
    """Make every weight O(1) and distinct (norm weights 1 ± 0.2 too), so that logits differ clearly."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 1 and name.endswith("weight"):  # RMSNorm / LayerNorm scales
                param.copy_(1 + 0.2 * noise)
            else:
                param.copy_(0.3 * noise)


def write_run(
    run_dir: Path,
    model: dict[str, Any],
    data_dir: Path | None,
    state_dict: dict[str, torch.Tensor] | None = None,
    seed: int = 0,
    global_step: int = 0,
) -> Path:
    """A run directory holding ``config.yaml`` and ``checkpoints/last.ckpt`` for ``model``; returns the ckpt.

    Without ``state_dict`` the model is built from ``model`` and :func:`perturbed_` with ``seed``."""
    if state_dict is None:
        module = build_module(model)
        perturbed_(module, seed)
        state_dict = module.state_dict()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": state_dict,
            "hyper_parameters": model,
            "global_step": global_step,
            "epoch": 0,
            "pytorch-lightning_version": "2.6.6",
        },
        ckpt,
    )
    config = {"model": model}
    if data_dir is not None:
        config["data"] = {"data_dir": str(data_dir), "seq_len": SEQ_LEN}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return ckpt


@dataclass
class Memorized:
    """A decoder trained until greedy decoding reproduces :data:`MEMORIZED`, saved as a run."""

    run_dir: Path
    ids: list[int]  # MEMORIZED's token ids
    final_loss: float


@pytest.fixture(scope="session")
def memorized(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path, tiny_tokenizer: Path) -> Memorized:
    """Train a width-64 SwiGLU decoder in-process on ``EOS + MEMORIZED + EOS`` (:data:`STEPS` AdamW steps)."""
    from lit_ffn.data.tokenizer import load_tokenizer

    tok = load_tokenizer(str(tiny_tokenizer))
    ids = tok.encode(MEMORIZED)
    sequence = torch.tensor([[tok.eos_id, *ids, tok.eos_id]])
    model = model_section({"class_path": "lit_ffn.ffn.SwiGLU"}, dim=64, n_heads=4, n_kv_heads=2)
    torch.manual_seed(0)
    module = build_module(model)
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3, weight_decay=0.0)
    with single_thread():
        for _ in range(STEPS):
            loss = module(sequence[:, :-1], sequence[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    run_dir = tmp_path_factory.mktemp("memorized") / "runs" / "mem" / "SwiGLU" / "seed_0"
    write_run(run_dir, model, tiny_dataset, state_dict=module.state_dict(), global_step=STEPS)
    return Memorized(run_dir, ids, loss.item())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A real run directory: ``lit_ffn fit`` for 4 steps on the tiny dataset (SwiGLU)."""
    from lit_ffn.cli import main
    from tests.conftest import tiny_fit_args

    root = tmp_path_factory.mktemp("inference_fit")
    with single_thread():
        assert main(tiny_fit_args(tiny_dataset, root, steps=4)) == 0
    return root / "runs" / "tiny" / "SwiGLU" / "seed_0"


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str], tool: str) -> str:
    """Run ``lit_ffn ARGV``: exit code 2 and exactly one ``lit_ffn <tool>: error:`` line, no traceback."""
    from lit_ffn.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"lit_ffn {tool}: error:")]
    assert len(lines) == 1, err
    return lines[0]


__all__ = [
    "MEMORIZED",
    "SEQ_LEN",
    "TINY_MODEL",
    "Memorized",
    "model_section",
    "one_line_error",
    "perturbed_",
    "write_run",
]
