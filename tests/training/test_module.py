"""LitDecoder facts that must survive wrapping and sharding, and what it logs.

FSDP1 (GPU only) turns every parameter into a flat 1-D view of the local
shard and inserts ``_fsdp_wrapped_module`` into parameter names; activation
checkpointing and ``torch.compile`` insert their own name components.  These
tests imitate those changes on CPU and check that weight-decay groups,
parameter counts and FLOPs per token are those of the model as built.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lit_ffn.distributed import apply_activation_checkpointing
from lit_ffn.ffn import DynamicGEGLU, SwiGLU
from lit_ffn.flops import flops_per_token
from lit_ffn.model import Decoder
from lit_ffn.parameter_names import unwrapped_parameter_name
from lit_ffn.training.module import LitDecoder
from tests.conftest import tiny_fit_args

SMALL = {"vocab_size": 64, "dim": 16, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 8}


def flatten_like_fsdp1(module: nn.Module) -> None:
    """Every parameter becomes a 1-D view of (here: all of) its data, as FSDP1's sharded views do."""
    with torch.no_grad():
        for param in module.parameters():
            param.data = param.data.reshape(-1)


class FSDPNamed(nn.Module):
    """Puts ``_fsdp_wrapped_module`` into the names of everything below it, as FSDP1's wrapper does."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._fsdp_wrapped_module = module

    def forward(self, *args, **kwargs):
        return self._fsdp_wrapped_module(*args, **kwargs)


def decay_names(lit: LitDecoder) -> dict[str, set[str]]:
    names = {id(p): unwrapped_parameter_name(n) for n, p in lit.model.named_parameters()}
    return {group["name"]: {names[id(p)] for p in group["params"]} for group in lit.parameter_groups()}


def test_weight_decay_groups_are_those_of_the_model_as_built() -> None:
    lit = LitDecoder(ffn=DynamicGEGLU, **SMALL)
    built = decay_names(lit)
    matrices = {n for n, p in lit.model.named_parameters() if p.ndim >= 2}
    assert built["decay"] == matrices and "embed.weight" in matrices
    assert {"layers.0.ffn.s", "layers.0.ffn.b", "norm.weight"} <= built["no_decay"]

    apply_activation_checkpointing(lit.model)
    lit.model.layers[1] = FSDPNamed(lit.model.layers[1])
    flatten_like_fsdp1(lit.model)
    assert any("_checkpoint_wrapped_module" in n for n, _ in lit.model.named_parameters())
    assert all(p.ndim == 1 for p in lit.model.parameters())
    assert decay_names(lit) == built  # not "every parameter is 1-D, so nothing is decayed"


def test_an_unknown_parameter_name_is_an_error_not_a_silent_no_decay() -> None:
    lit = LitDecoder(ffn=SwiGLU, **SMALL)
    lit.model.extra = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="extra.weight"):
        lit.parameter_groups()


def test_parameter_count_and_flops_are_those_of_the_model_as_built() -> None:
    model = Decoder(ffn=SwiGLU, **SMALL)
    total, non_embedding = model.num_parameters(), model.num_parameters(exclude_embedding=True)
    flops = flops_per_token(model, seq_len=32)
    assert total == sum(p.numel() for p in model.parameters())
    assert total - non_embedding == SMALL["vocab_size"] * SMALL["dim"]
    # flattened local shards of 2 ranks would hold about half of every parameter
    with torch.no_grad():
        for param in model.parameters():
            param.data = param.data.reshape(-1)[: (param.numel() + 1) // 2]
    assert model.num_parameters() == total and model.num_parameters(exclude_embedding=True) == non_embedding
    assert flops_per_token(model, seq_len=32) == flops


def test_rope_cache_built_under_inference_mode_serves_training() -> None:
    """validate/test (inference_mode) before fit in one process must not poison the RoPE cache."""
    model = Decoder(ffn=SwiGLU, **SMALL)
    tokens = torch.randint(0, SMALL["vocab_size"], (2, 12))
    with torch.inference_mode():
        model(tokens, tokens)
    model(tokens, tokens).backward()  # raised "Inference tensors cannot be saved for backward"
    assert model.embed.weight.grad is not None


def test_val_loss_is_token_weighted_and_a_nan_batch_makes_it_nan() -> None:
    """A NaN batch must not be dropped from the mean (torchmetrics' default nan_strategy), and the
    weights must be kept (torchmetrics' nan_strategy="disable" drops them)."""
    lit = LitDecoder(ffn=SwiGLU, **SMALL)
    lit.val_loss.update(torch.tensor(1.0), weight=30)
    lit.val_loss.update(torch.tensor(4.0), weight=10)
    assert lit.val_loss.compute().item() == pytest.approx(1.75)
    lit.val_loss.reset()
    lit.val_loss.update(torch.tensor(2.0), weight=10)
    lit.val_loss.update(torch.tensor(float("nan")), weight=10)
    assert torch.isnan(lit.val_loss.compute())


def test_train_loss_is_the_mean_over_the_steps_micro_batches(tmp_path: Path, tiny_dataset: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_ffn.training.lightning_cli import LitFFNCLI

    args = tiny_fit_args(tiny_dataset, tmp_path, "--trainer.accumulate_grad_batches=2", steps=3)
    cli = LitFFNCLI(args=args[1:], run=False)
    micro_losses: list[float] = []
    training_step = cli.model.training_step

    def recording_training_step(batch, batch_idx):
        loss = training_step(batch, batch_idx)
        micro_losses.append(float(loss.detach()))
        return loss

    cli.model.training_step = recording_training_step
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    events = EventAccumulator(str(tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    assert len(micro_losses) == 6 and sorted(logged) == [0, 1, 2]
    for step in range(3):
        expected = (micro_losses[2 * step] + micro_losses[2 * step + 1]) / 2
        assert logged[step] == pytest.approx(expected, rel=1e-6)
        assert logged[step] != pytest.approx(micro_losses[2 * step + 1], rel=1e-6)  # not the last micro-batch
