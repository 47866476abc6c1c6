"""Weight averaging (EMA / SWA) of a run through Lightning's own ``WeightAveraging`` callbacks.

``averaging`` is a top-level option of ``lit_ffn fit`` (off by default) that takes any subclass of
:class:`lightning.pytorch.callbacks.WeightAveraging`, e.g. ``configs/averaging/ema.yaml``::

    averaging:
      class_path: lightning.pytorch.callbacks.EMAWeightAveraging
      init_args: {decay: 0.98}

It is its own key rather than an entry of ``trainer.callbacks`` so that a config file switches it on
without replacing the base config's callback list (a later YAML replaces a list, it cannot append).

What Lightning's callback does (Lightning 2.6, ``callbacks/weight_averaging.py``): after every optimizer
step k (from ``update_starting_at_step``, every ``update_every_n_steps``) it updates a copy of the model,
``torch.optim.swa_utils.AveragedModel``; for ``EMAWeightAveraging(decay=d)``::

    θ̄_1 = θ_1,    θ̄_k = d · θ̄_{k−1} + (1 − d) · θ_k        (θ_k: the weights after step k)

Validation during the fit runs on θ̄ (the weights are swapped in and out); every checkpoint saved during
the fit holds θ̄ as its ``state_dict`` and the trained weights θ as ``current_model_state`` (plus
``averaging_state``: the number of updates), so a resumed fit continues both exactly, and everything that
loads a checkpoint's ``state_dict`` — ``lit_ffn ablate``'s final evaluation, ``generate``, ``evaluate``,
``export`` — uses the averaged model.  At the end of the fit θ̄ is copied into the model.

Not with sharded training (FSDP/FSDP2): Lightning's callback keeps a whole unsharded copy and does not
shard it; refused with one line.
"""

from __future__ import annotations

import warnings
from typing import Any

from lit_ffn.errors import UserError

#: The top-level config key.
KEY = "averaging"

#: Strategies whose parameters are sharded: Lightning's WeightAveraging cannot average them.
SHARDED_STRATEGIES = ("FSDP", "ModelParallel", "fsdp")

#: Lightning warns whenever the module overrides ``configure_model`` (LitDecoder always does: activation
#: checkpointing, compile, FSDP2).  Without sharding — the only case let through — it has nothing to say.
_CONFIGURE_MODEL_WARNING = r"You're using the WeightAveraging callback with a model that overrides the configure_model"


def add_averaging_argument(parser: Any) -> None:
    """``--averaging`` (any ``WeightAveraging`` subclass; default none) on a LightningCLI parser."""
    from lightning.pytorch.callbacks import WeightAveraging

    parser.add_subclass_arguments(
        WeightAveraging,
        KEY,
        required=False,
        fail_untyped=False,
        help="weight averaging of the trained model (validation, checkpoints' state_dict, the final model): "
        "e.g. --config configs/averaging/ema.yaml or --averaging=EMAWeightAveraging --averaging.decay=0.98 "
        "(lit_ffn.training.averaging); default: none",
    )


def averaging_callback(config_init: Any, strategy_name: str) -> Any | None:
    """The instantiated averaging callback of a parsed ``fit`` config (None: off), refused under sharding."""
    callback = config_init.get(KEY) if hasattr(config_init, "get") else None
    if callback is None:
        return None
    if any(marker in strategy_name for marker in SHARDED_STRATEGIES):
        raise UserError(
            f"averaging ({type(callback).__name__}) with trainer.strategy={strategy_name}: Lightning's weight "
            "averaging keeps an unsharded copy of the model and cannot average sharded parameters; drop "
            "--averaging or train without FSDP (single device or DDP)"
        )
    warnings.filterwarnings("ignore", message=_CONFIGURE_MODEL_WARNING)
    return callback


__all__ = ["KEY", "SHARDED_STRATEGIES", "add_averaging_argument", "averaging_callback"]
