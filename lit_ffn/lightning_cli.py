"""The LightningCLI for ``lit_ffn fit|validate|test``.

Everything about a run comes from YAML/flags through jsonargparse; this class
links arguments that must agree and gives every run a stable directory:

    <save_dir>/<experiment>/<ffn variant>/seed_<seed>/     (TensorBoardLogger save_dir/name/version)
        config.yaml  events.out.tfevents.*  checkpoints/last.ckpt

so runs of different FFNs and seeds sit side by side in TensorBoard, and
``lit_ffn fit --config <run>/config.yaml --ckpt_path last`` finds its own checkpoint.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from lit_ffn.data import TokenDataModule
from lit_ffn.errors import UserError
from lit_ffn.module import LitDecoder

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    "init_args": {"save_dir": "runs", "name": "default"},
}


def ffn_variant_name(ffn: Any) -> str:
    """``ClassName`` plus its init arguments that differ from their defaults,
    e.g. ``GEGLU`` or ``GEGLU-approximate=tanh`` (``ffn`` is the parsed
    ``model.ffn``: a class_path/init_args namespace or dict)."""
    get = (lambda k: ffn.get(k)) if hasattr(ffn, "get") else (lambda k: getattr(ffn, k, None))
    class_path = get("class_path")
    if not class_path:
        return "ffn"
    module_name, _, class_name = class_path.rpartition(".")
    init_args = get("init_args") or {}
    init_args = dict(init_args.items()) if hasattr(init_args, "items") else vars(init_args)
    try:
        params = inspect.signature(getattr(importlib.import_module(module_name), class_name)).parameters
    except Exception:  # noqa: BLE001 - the name is all we need; parsing already validated the class
        params = {}
    changed = [
        f"{key}={value}"
        for key, value in sorted(init_args.items())
        if key in params and params[key].default is not inspect.Parameter.empty and params[key].default != value
    ]
    return "-".join([class_name, *changed])


class LitFFNCLI(LightningCLI):
    """``LightningCLI(LitDecoder, TokenDataModule)`` with lit_ffn's links and run directories.

    * ``model.vocab_size`` → ``data.vocab_size``: the DataModule refuses a
      dataset whose tokenizer does not fit the model.
    * ``seed_everything`` → ``data.seed``: one seed drives init and shuffling.
    * ``checkpoint``: a ModelCheckpoint that is always there, writing
      ``last.ckpt`` every ``checkpoint.every_n_train_steps`` steps and at the
      end of fit (``checkpoint.save_top_k`` keeps step-named copies too).
    * the TensorBoard logger's ``version`` defaults to ``<ffn variant>/seed_<seed>``;
      ``fit`` refuses to start over a run that already has checkpoints unless
      it resumes (``--ckpt_path last``).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # LitDecoder owns AdamW + schedule
        kwargs.setdefault("trainer_defaults", {"logger": DEFAULT_LOGGER})
        kwargs.setdefault("seed_everything_default", 0)  # reproducible unless asked otherwise
        super().__init__(LitDecoder, TokenDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.every_n_train_steps": 100})
        parser.link_arguments("model.vocab_size", "data.vocab_size")
        parser.link_arguments("seed_everything", "data.seed")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = self._name_run(config)
        if self.subcommand == "fit" and run_dir is not None and config.get("ckpt_path") is None:
            existing = run_dir / "checkpoints" / "last.ckpt"
            if existing.exists():
                raise UserError(
                    f"run directory {run_dir} already holds {existing.name}: resume it with "
                    f"`lit_ffn fit --config {run_dir / 'config.yaml'} --ckpt_path last`, or start a new run "
                    "with another --trainer.logger.init_args.version (or .name)"
                )

    @staticmethod
    def _name_run(config: Any) -> Optional[Path]:
        """Fill in the TensorBoard logger's version; return the run directory (None: no such logger)."""
        logger = config.get("trainer", {}).get("logger")
        if not hasattr(logger, "get") or not str(logger.get("class_path", "")).endswith("TensorBoardLogger"):
            return None
        init_args = logger.init_args
        if init_args.get("version") is None:
            init_args.version = f"{ffn_variant_name(config.model.ffn)}/seed_{config.get('seed_everything')}"
        return Path(init_args.save_dir) / (init_args.get("name") or "") / str(init_args.version)
