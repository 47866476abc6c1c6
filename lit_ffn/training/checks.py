"""Checks that turn a value which cannot describe a working run into one line, before anything is built.

* :func:`check_model_arguments` — every ``model.*`` argument of :class:`~lit_ffn.training.module.LitDecoder`
  (shape, optimizer, schedule, loss) against its range, naming the key and the allowed values;
* :func:`check_checkpoint_path` — ``--ckpt_path``: ``last`` of a run that has none, a missing path, a
  file that is not a checkpoint or was truncated, a directory that is not a distributed checkpoint;
* :func:`trainer_error` — what Lightning raises for an accelerator or strategy this machine cannot run,
  with what works here;
* :func:`config_differences` — how a new run's settings differ from a run directory's saved config.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lit_ffn.errors import UserError, first_line

#: ``--ckpt_path`` values Lightning resolves itself (``last`` is checked here as well).
LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")
#: lit_ffn's own ``--ckpt_path`` value: ``last`` when the run has a last.ckpt, else a fresh start
#: (for job scripts that are resubmitted or requeued with the same command, e.g. scripts/slurm.sbatch).
AUTO = "auto"


def resolve_auto(ckpt_path: str | None, checkpoint_dir: Path | None) -> str | None:
    """``--ckpt_path auto`` → ``last`` if ``<checkpoint_dir>/last.ckpt`` exists, else None (start fresh)."""
    if ckpt_path != AUTO:
        return ckpt_path
    return "last" if checkpoint_dir is not None and (checkpoint_dir / "last.ckpt").exists() else None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_model_arguments(
    *,
    vocab_size: int,
    dim: int,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int,
    head_dim: int,
    rope_theta: float,
    norm_eps: float,
    init_std: float,
    lr: float,
    betas: Sequence[float],
    eps: float,
    weight_decay: float,
    warmup_steps: int,
    min_lr_ratio: float,
    loss_chunk_size: int,
    loss_impl: str = "auto",
) -> None:
    """Raise a one-line :class:`UserError` naming the first ``model.*`` value outside its range."""
    positive_ints = {"vocab_size": vocab_size, "dim": dim, "n_layers": n_layers, "n_heads": n_heads}
    for key, value in positive_ints.items():
        if value < 1:
            raise UserError(f"model.{key}={value}: must be a positive integer")
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise UserError(
            f"model.n_kv_heads={n_kv_heads}: must divide model.n_heads={n_heads} (grouped-query attention), "
            f"i.e. one of {', '.join(map(str, _divisors(n_heads)))}"
        )
    if head_dim < 2 or head_dim % 2:
        raise UserError(f"model.head_dim={head_dim}: must be a positive even number (RoPE rotates pairs of channels)")
    positive_floats = {"rope_theta": rope_theta, "norm_eps": norm_eps, "init_std": init_std, "lr": lr, "eps": eps}
    for key, value in positive_floats.items():
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"model.{key}={value}: must be a finite number > 0")
    if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
        raise UserError(f"model.betas={list(betas)}: must be two numbers in [0, 1), e.g. [0.9, 0.98]")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise UserError(f"model.weight_decay={weight_decay}: must be >= 0")
    if warmup_steps < 0:
        raise UserError(f"model.warmup_steps={warmup_steps}: must be >= 0")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise UserError(f"model.min_lr_ratio={min_lr_ratio}: must be in [0, 1] (the floor of the cosine, × lr)")
    if loss_chunk_size < 0:
        raise UserError(f"model.loss_chunk_size={loss_chunk_size}: must be >= 0 (0: the plain, unchunked loss)")
    from lit_ffn.loss_backends import LOSS_IMPLS

    if loss_impl not in LOSS_IMPLS:  # where it can run is checked when a run is set up (LitDecoder.setup)
        raise UserError(f"model.loss_impl={loss_impl}: unknown; choose one of {', '.join(LOSS_IMPLS)}")


def schedule_warning(warmup_steps: int, total_steps: int) -> str | None:
    """A warning when the warm-up does not end inside the run (``model.warmup_steps >= trainer.max_steps``):
    a legal run (short smoke tests of a long config do it), but the learning rate never reaches its peak."""
    if total_steps > 0 and warmup_steps >= total_steps:
        return (
            f"model.warmup_steps={warmup_steps} is not below trainer.max_steps={total_steps}: the learning rate "
            "never reaches its peak and never decays in this run"
        )
    return None


def check_checkpoint_path(ckpt_path: str | None, checkpoint_dir: Path | None) -> None:
    """Refuse a ``--ckpt_path`` that cannot be resumed from (one line each).

    ``last`` needs ``<checkpoint_dir>/last.ckpt`` (Lightning would only warn and start from step 0);
    a path must be a ``torch.save`` file whose zip directory is intact, or a distributed
    checkpoint directory (FSDP2: a ``.metadata`` file; a consolidated single file is a file).
    """
    if ckpt_path is None or ckpt_path in LIGHTNING_CKPT_ALIASES[1:]:
        return
    if ckpt_path == "last":
        if checkpoint_dir is None:
            return  # no TensorBoard run directory: Lightning resolves "last" itself
        last = checkpoint_dir / "last.ckpt"
        if not last.exists():
            raise UserError(
                f"--ckpt_path last: {checkpoint_dir} holds no last.ckpt, so there is nothing to resume; start the "
                "run without --ckpt_path (or with --ckpt_path auto: resume if there is one), or give a checkpoint path"
            )
        ckpt_path = str(last)
    path = Path(ckpt_path)
    if not path.exists():
        raise UserError(f"--ckpt_path {ckpt_path}: no such file or directory")
    if path.is_dir():
        if not (path / ".metadata").is_file():
            raise UserError(
                f"--ckpt_path {ckpt_path}: a directory but not a distributed checkpoint (no .metadata file in it)"
            )
        return
    try:
        intact = zipfile.is_zipfile(path)
    except OSError as err:
        raise UserError(f"--ckpt_path {ckpt_path}: cannot read it ({first_line(err)})") from None
    if not intact:
        raise UserError(
            f"--ckpt_path {ckpt_path}: not a checkpoint, or a truncated one (no intact torch.save archive); "
            "a killed save never replaces last.ckpt, so the run's checkpoints/last.ckpt is the one to resume from"
        )


def trainer_error(err: BaseException, strategy: str = "") -> UserError | None:
    """A one-line error for an accelerator or strategy this machine cannot run (None: not one of those);
    ``strategy`` is the configured ``trainer.strategy`` (its class path or name)."""
    import torch

    message = first_line(err)
    cuda = torch.cuda.is_available()
    fsdp1 = strategy.rsplit(".", 1)[-1] in ("FSDPStrategy", "fsdp")
    if "requires a GPU accelerator" in message or ("fsdp" in message.lower() and not cuda) or (fsdp1 and not cuda):
        return UserError(
            f"trainer.strategy: FSDP1 (FSDPStrategy) runs only on GPUs and this machine has none ({message}); "
            "on CPU shard with FSDP2 (--config configs/strategy/fsdp2.yaml) or use --trainer.strategy=ddp"
        )
    if "gpu backend" in message.lower() or ("cuda" in message.lower() and not cuda):
        return UserError(
            f"trainer.accelerator: {message} (torch.cuda.is_available() is False here): use "
            "--trainer.accelerator=cpu, or run on a machine with a GPU"
        )
    if "devices" in message.lower() and "accelerator" in message.lower():
        return UserError(f"trainer.devices: {message}")
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(err, MisconfigurationException):  # Lightning's own check of a trainer/callback value
        return UserError(message)
    return None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


#: Keys that say where a run goes or how it is launched, not what it trains: not reported as differences.
_IGNORED = ("ckpt_path", "trainer.logger", "trainer.default_root_dir", "checkpoint.dirpath", "config")


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], limit: int = 6) -> list[str]:
    """``["model.dim 128 → 256", …]``: the settings of ``current`` that differ from a run's saved config."""
    old, new = _flatten(saved), _flatten(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key.startswith(_IGNORED) or "__path__" in key:
            continue
        if old.get(key) != new.get(key):
            changes.append(f"{key} {old.get(key, '(unset)')} → {new.get(key, '(unset)')}")
    if len(changes) > limit:
        changes = [*changes[:limit], f"… {len(changes) - limit} more"]
    return changes


__all__ = [
    "AUTO",
    "check_checkpoint_path",
    "check_model_arguments",
    "config_differences",
    "resolve_auto",
    "schedule_warning",
    "trainer_error",
]
