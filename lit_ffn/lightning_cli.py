"""The LightningCLI for ``lit_ffn fit|validate|test``.

Everything about a run comes from YAML/flags through jsonargparse; this class
only links arguments that must agree and names the log directory.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from lit_ffn.data import TokenDataModule
from lit_ffn.module import LitDecoder


class LitFFNCLI(LightningCLI):
    """``LightningCLI(LitDecoder, TokenDataModule)`` with lit_ffn's links.

    * ``model.vocab_size`` → ``data.vocab_size``: the DataModule refuses a
      dataset whose tokenizer does not fit the model.
    * ``seed_everything`` → ``data.seed``: one seed drives init and shuffling.
    * ``checkpoint``: a ModelCheckpoint that is always there, writing
      ``last.ckpt`` every ``checkpoint.every_n_train_steps`` steps and at the
      end of fit (``checkpoint.save_top_k`` keeps step-named copies too).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # LitDecoder owns AdamW + schedule
        super().__init__(LitDecoder, TokenDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.every_n_train_steps": 100})
        parser.link_arguments("model.vocab_size", "data.vocab_size")
        parser.link_arguments("seed_everything", "data.seed")
