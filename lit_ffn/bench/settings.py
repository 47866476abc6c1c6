"""What one ``lit_ffn bench`` run times: the settings every model shares, and the models' configs.

Configs are parsed by ``lit_ffn fit``'s own parser (:class:`~lit_ffn.training.config.FitConfigParser`):
the same defaults, ``--config`` composition and one-line errors as a training run.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lit_ffn.errors import UserError
from lit_ffn.loss_backends import check_loss_impl
from lit_ffn.training.config import FitConfigParser, build_module

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")


@dataclass
class Settings:
    """What every model in one bench run shares."""

    device: torch.device
    precision: str
    batch_size: int
    seq_len: int
    steps: int
    warmup: int
    compile: bool
    grad_clip: float | None
    vocab_size: int
    seed: int = 0
    compile_backend: str = "inductor"


@functools.cache
def fit_parser() -> FitConfigParser:
    """One :class:`FitConfigParser` per process: building it takes seconds, and it keeps no state between parses."""
    return FitConfigParser()


class ModelConfigs:
    """Parsed fit configs for the ``--config`` files, with ``model.ffn`` and other model keys replaced."""

    def __init__(self, configs: list[str]) -> None:
        for path in configs:
            if not Path(path).is_file():
                raise UserError(f"--config {path}: no such file")
        self.base_args = [arg for path in configs for arg in ("--config", path)]
        self.parser = fit_parser()
        self.config = self.parser.parse(self.base_args)

    def model(self, ffn: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> Any:
        """The parsed ``model`` section with ``ffn`` (a ``model.ffn`` spec) and ``overrides`` applied."""
        args = list(self.base_args)
        if ffn is not None:
            args.append(f"--model.ffn={json.dumps(ffn)}")
        # strings as they are: jsonargparse takes a JSON-quoted string for a Literal as the quotes and all
        args += [
            f"--model.{key}={value if isinstance(value, str) else json.dumps(value)}"
            for key, value in (overrides or {}).items()
        ]
        return self.parser.parse(args).model if len(args) > len(self.base_args) else self.config.model

    def build(self, ffn: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> Any:
        """A :class:`~lit_ffn.training.module.LitDecoder` for :meth:`model`."""
        return build_module(self.model(ffn, overrides))


def _precision(value: Any) -> str:
    text = str(value) if value is not None else "32-true"
    aliases = {"32": "32-true", "bf16": "bf16-mixed"}
    text = aliases.get(text, text)
    if text not in PRECISIONS:
        raise UserError(f"precision {text!r} is not benchmarked: use one of {', '.join(PRECISIONS)}")
    return text


def settings_from(args: argparse.Namespace, cfg: Any) -> Settings:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trainer, data = cfg.trainer, cfg.data
    batch_size = args.batch_size or data.get("batch_size")
    seq_len = args.seq_len or data.get("seq_len")
    if not batch_size or not seq_len:
        raise UserError(
            "no batch size / sequence length: give --batch-size and --seq-len or data.batch_size / data.seq_len"
        )
    for name, value in (("--steps", args.steps), ("--batch-size", batch_size), ("--seq-len", seq_len)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    if args.warmup < 1:
        raise UserError(f"--warmup must be at least 1 (memory is measured over the warm-up), got {args.warmup}")
    for value in args.loss_chunk_size or []:
        if value < 0:
            raise UserError(f"--loss-chunk-size must be >= 0 (0: plain loss), got {value}")
    precision = _precision(args.precision or trainer.get("precision"))
    for impl in getattr(args, "loss_impl", None) or [cfg.model.get("loss_impl", "auto")]:
        check_loss_impl(impl, device.type, precision)  # one line before any model is built
    return Settings(
        device=device,
        precision=precision,
        batch_size=int(batch_size),
        seq_len=int(seq_len),
        steps=args.steps,
        warmup=args.warmup,
        compile=args.compile or bool(getattr(cfg.model, "compile", False)),
        grad_clip=trainer.get("gradient_clip_val"),
        vocab_size=int(cfg.model.vocab_size),
        seed=args.seed,
        compile_backend=getattr(args, "compile_backend", "inductor"),
    )


__all__ = ["PRECISIONS", "ModelConfigs", "Settings", "settings_from"]
