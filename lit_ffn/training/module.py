"""The LightningModule: a Qwen3-style decoder with a pluggable FFN, trained on next-token loss."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric

from lit_ffn._lightning import let_lightning_unscale
from lit_ffn.errors import UserError, first_line
from lit_ffn.ffn import SwiGLU
from lit_ffn.ffn.registry import factory_name
from lit_ffn.flops import flops_per_token
from lit_ffn.loss_backends import LossImpl, check_loss_impl
from lit_ffn.model import FFNFactory
from lit_ffn.model_config import build_decoder
from lit_ffn.parameter_names import unwrapped_parameter_name
from lit_ffn.seeds import check_seed
from lit_ffn.training.batch_plan import epoch_remainder_warning
from lit_ffn.training.checks import check_model_arguments, schedule_warning
from lit_ffn.training.guards import NonFiniteGuard, NonFiniteMode
from lit_ffn.training.optim import Schedule, lr_multiplier
from lit_ffn.training.schedule import DecayStartCheckpoint, realign_learning_rates

#: The learning rate's tag prefix (LearningRateMonitor adds ``/decay`` and ``/no_decay``, the parameter groups).
LR_TAG = "vitals/lr"


class LitDecoder(L.LightningModule):
    """Trains :class:`lit_ffn.model.Decoder` with AdamW and warmup + cosine (or warmup-stable-decay).

    Args:
        ffn: the FFN factory, called once per layer with the model width
            (``class_path``/``init_args`` under ``model.ffn`` in YAML).
        vocab_size … init_std: the decoder's shape, see :class:`~lit_ffn.model.Decoder`.
        lr, betas, eps, weight_decay: AdamW.  Weight decay applies to matrices
            (Linear and embedding weights) only, not to norms, biases or scalars.
        warmup_steps, min_lr_ratio: the schedule's warm-up and floor; its length is ``trainer.max_steps``.
        schedule: ``"cosine"`` (:func:`~lit_ffn.training.optim.warmup_cosine`) or ``"wsd"``
            (:func:`~lit_ffn.training.optim.warmup_stable_decay`: constant after the warm-up, decay over
            the last ``decay_fraction`` of the run; a run that can be made longer, see
            :mod:`lit_ffn.training.schedule`).
        decay_fraction: the share of ``trainer.max_steps`` the ``wsd`` decay takes (0 < f ≤ 1).
        loss_chunk_size: tokens per chunk of the chunked cross-entropy (0: plain loss).
        loss_impl: which backend computes the loss (:mod:`lit_ffn.loss_backends`): ``"auto"``
            (``chunked`` on every device until a GPU measurement decides otherwise), ``"chunked"``
            (:mod:`lit_ffn.loss`), ``"cce"`` (Cut Cross-Entropy, CUDA and bf16/fp16, ``[cce]`` extra),
            ``"cce_torch_compile"`` (its ``torch.compile`` implementation: any device, for testing),
            ``"liger"`` (Liger-Kernel, CUDA, ``[liger]`` extra).  One that cannot run on the run's
            device and precision is refused before anything is built.
        compile, activation_checkpointing: ``torch.compile`` / activation
            checkpointing per decoder block, applied in ``configure_model()``
            before FSDP2 sharding (``lit_ffn.distributed``).
        sdpa_gqa: how grouped-query attention calls SDPA: ``"native"`` (``enable_gqa``) or
            ``"expand"`` (kv heads repeated first, for fused kernels without GQA support; the
            same numbers).  ``scripts/gpu_check.sh`` reports which one gets a fast kernel.
        nonfinite: a NaN/inf training loss stops the run naming the step and
            the last good checkpoint (``"raise"``) or skips the batch
            (``"skip"``, counted in ``train/nonfinite_skipped``); ``lit_ffn.training.guards``.
        init_seed: the seed of the initial weights, a non-negative integer; each tensor is drawn from a
            stream keyed by it and the tensor's name (:meth:`lit_ffn.model.Decoder.init_weights`), so a
            changed FFN leaves every other module's initial weights as they were.  ``None``: the seed
            torch was last seeded with — under ``lit_ffn fit`` ``seed_everything`` (the CLI writes the
            value into config.yaml); the value used is stored in the hyper-parameters.
    """

    def __init__(
        self,
        ffn: FFNFactory = SwiGLU,
        vocab_size: int = 151_936,
        dim: int = 512,
        n_layers: int = 8,
        n_heads: int = 8,
        n_kv_heads: int = 4,
        head_dim: int = 64,
        rope_theta: float = 1e6,
        norm_eps: float = 1e-6,
        tie_embeddings: bool = True,
        init_std: float = 0.02,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        loss_chunk_size: int = 1024,
        compile: bool = False,
        activation_checkpointing: bool = False,
        nonfinite: NonFiniteMode = "raise",
        sdpa_gqa: Literal["native", "expand"] = "native",
        schedule: Schedule = "cosine",
        decay_fraction: float = 0.2,
        loss_impl: LossImpl = "auto",
        init_seed: int | None = None,
    ) -> None:
        super().__init__()
        # Under LightningCLI the saved hparams are the parsed config (ffn as
        # class_path/init_args), so `LitDecoder.load_from_checkpoint` rebuilds it.
        self.save_hyperparameters()
        hp = self.hparams
        # every value is checked before anything is built: one line naming the key (lit_ffn.training.checks)
        check_model_arguments(**{key: hp[key] for key in inspect.signature(check_model_arguments).parameters})
        if not 0.0 < decay_fraction <= 1.0:
            raise UserError(f"model.decay_fraction={decay_fraction}: must be in (0, 1], e.g. 0.2 (the last 20% decays)")
        check_seed("model.init_seed", init_seed)
        self.ffn_name = factory_name(ffn)
        self.ffn_factory = ffn
        try:
            self.model = build_decoder(hp)  # the same function inference rebuilds a trained decoder with
        except (ValueError, TypeError) as err:  # the decoder's own shape is checked above: this is the FFN's
            raise UserError(f"model.ffn ({self.ffn_name}): {first_line(err)}") from None
        self.hparams["init_seed"] = self.model.init_seed  # the seed used, in every checkpoint
        # Weight decay is decided here, from the shapes as built: under FSDP1 every parameter
        # later becomes a flat 1-D shard, so `ndim` at configure_optimizers time would say nothing.
        self.parameter_ndims = {name: param.ndim for name, param in self.model.named_parameters()}
        self.nonfinite_guard = NonFiniteGuard(nonfinite)
        self._step_losses: list[torch.Tensor] = []  # this optimizer step's micro-batch losses
        self.val_history: list[tuple[int, float]] = []  # (step, val/loss) of the validations of this fit
        # A NaN batch must make val/loss NaN: torchmetrics' default ("warn") drops it from the mean
        # and reports a finite loss of a diverged model on part of the set, and "disable" (torchmetrics
        # 1.9) also drops the weights (an unweighted mean over batches).  A float strategy replaces
        # NaN by that float and keeps the weights: replacing NaN by NaN propagates it.
        self.val_loss = MeanMetric(nan_strategy=float("nan"))
        self.test_loss = MeanMetric(nan_strategy=float("nan"))

    # ------------------------------------------------------------------ steps
    @staticmethod
    def split_batch(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T+1) token blocks → inputs (B, T) and next-token targets (B, T), int64."""
        batch = batch.long()
        return batch[:, :-1], batch[:, 1:]

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        hp = self.hparams
        return self.model(tokens, targets, loss_chunk_size=hp.loss_chunk_size, loss_impl=hp.get("loss_impl", "auto"))

    def check_loss_impl(self, trainer: Any) -> None:
        """Refuse (one line) a ``loss_impl`` that cannot run on ``trainer``'s device and precision."""
        device_type = trainer.strategy.root_device.type
        check_loss_impl(self.hparams.get("loss_impl", "auto"), device_type, str(trainer.precision))

    def setup(self, stage: str) -> None:
        # lit_ffn fit checks this before anything is written (LitFFNCLI); here for a Trainer built in Python
        self.check_loss_impl(self.trainer)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        tokens, targets = self.split_batch(batch)
        loss = self(tokens, targets)
        self.nonfinite_guard.record_loss(loss)  # no host sync: checked once per optimizer step
        # train/loss is the optimizer step's loss: the mean over its micro-batches (all of equal token
        # count) here, then over ranks when it is logged in on_before_optimizer_step.
        self._step_losses.append(loss.detach())
        return loss

    def _eval_step(self, batch: torch.Tensor, metric: MeanMetric) -> None:
        tokens, targets = self.split_batch(batch)
        metric.update(self(tokens, targets), weight=targets.numel())

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss)

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss)

    def _log_eval(self, prefix: str, metric: MeanMetric) -> None:
        # MeanMetric syncs across ranks in compute(): a token-weighted mean over the whole set.
        loss = metric.compute()
        metric.reset()
        if self.trainer.state.fn != "fit":  # validate / test: Lightning's own logging
            self.log(f"{prefix}/loss", loss, prog_bar=True)
            self.log(f"{prefix}/ppl", torch.exp(loss))
            return
        # While fitting, validation after k optimizer steps is written at step k
        # (Lightning's logger step would be k-1).  The sanity check — with
        # num_sanity_val_steps=-1 the full validation set before the first step —
        # is discarded by Lightning, so it is written here too, as the point at
        # step 0 (on a resumed fit: at the resumed step).
        if self.trainer.sanity_checking and any(
            n_sanity < n_val
            for n_sanity, n_val in zip(self.trainer.num_sanity_val_batches, self.trainer.num_val_batches)
        ):
            return  # a partial sanity check (num_sanity_val_steps > 0) is no step-0 validation
        value = loss.item()
        if prefix == "val":
            self.val_history.append((self.global_step, value))  # this process's fit: the end-of-run summary
        for logger in self.loggers:
            logger.log_metrics({f"{prefix}/loss": value, f"{prefix}/ppl": loss.exp().item()}, step=self.global_step)
        if not self.trainer.sanity_checking:  # for the progress bar, checkpoint monitors and callbacks
            self.log(f"{prefix}/loss", loss, prog_bar=True, logger=False)
            self.log(f"{prefix}/ppl", torch.exp(loss), logger=False)

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val", self.val_loss)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test", self.test_loss)

    # ------------------------------------------------------------ scale-out
    def configure_model(self) -> None:
        """Activation checkpointing, per-block compile, FSDP2 sharding (``lit_ffn.distributed.parallelize``).

        Also called without a Trainer, by ``load_from_checkpoint``."""
        from lit_ffn.distributed import data_parallel_mesh, parallelize

        parallelize(
            self.model,
            activation_checkpointing=self.hparams.activation_checkpointing,
            compile=self.hparams.compile,
            mesh=data_parallel_mesh(self.device_mesh),
            precision=str(self._trainer.precision) if self._trainer is not None else "32-true",
            # a module built on the meta device is materialised here, initialised by path (Decoder.init_weights)
            device=self._trainer.strategy.root_device if self._trainer is not None else torch.device("cpu"),
        )

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        from lit_ffn.distributed import clip_gradients

        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_callbacks(self) -> list[Any]:
        """Under ``wsd``: ``decay_start.ckpt``, the checkpoint a longer run continues from."""
        return [DecayStartCheckpoint()] if self.hparams.get("schedule") == "wsd" else []

    def on_train_start(self) -> None:
        trainer = self.trainer
        realign_learning_rates(self.lr_schedulers())  # a resume with another max_steps: its first step too
        message = epoch_remainder_warning(
            trainer.num_training_batches, trainer.accumulate_grad_batches, trainer.max_steps
        )
        if message is not None:
            rank_zero_warn(message)

    def on_train_epoch_start(self) -> None:
        self._step_losses = []

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        losses, self._step_losses = self._step_losses, []
        finite = self.nonfinite_guard.before_optimizer_step(optimizer, self)  # drop or check this step
        if finite and losses:  # not logged for a skipped step
            self.log("train/loss", torch.stack(losses).mean(), prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nonfinite_guard"] = self.nonfinite_guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_guard.load_state_dict(checkpoint.get("nonfinite_guard", {}))

    # -------------------------------------------------------------- optimizer
    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: ``decay`` (matrices: Linear and embedding weights) and ``no_decay``
        (norms, biases, scalars such as DynamicGEGLU's s and b), by each parameter's shape
        as built (:attr:`parameter_ndims`), whatever wrapping happened since."""
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            ndim = self.parameter_ndims.get(unwrapped_parameter_name(name))
            if ndim is None:
                raise RuntimeError(
                    f"parameter '{name}' of the wrapped model was not in the model as built: "
                    "cannot tell whether it is a matrix (extend lit_ffn.parameter_names.WRAPPER_PREFIXES)"
                )
            (decay if ndim >= 2 else no_decay).append(param)
        return [
            {"params": decay, "weight_decay": self.hparams.weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # one fused kernel per step (CPU: 6x faster than foreach on the 19M-entry embedding, docs/benchmarks.md)
        fused = self.device.type in ("cuda", "cpu")
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, fused=fused)
        let_lightning_unscale(optimizer)  # clipping a fused AdamW under mixed precision (Lightning#21435)
        total_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches
        self.schedule_steps = int(total_steps)  # the schedule's S (DecayStartCheckpoint, the end-of-fit summary)
        warning = schedule_warning(hp.warmup_steps, int(total_steps))
        if warning is not None:
            rank_zero_warn(warning)
        kind, decay_fraction = hp.get("schedule", "cosine"), hp.get("decay_fraction", 0.2)  # runs saved before both
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_multiplier(kind, step, hp.warmup_steps, int(total_steps), hp.min_lr_ratio, decay_fraction),
        )
        # "name": LearningRateMonitor's tag, vitals/lr/<param group>: in TensorBoard's `vitals` group with the
        # gradient norm and throughput, after `train` and `val` (Lightning's lr-AdamW/… would be a group of its
        # own, first: docs/gates.md)
        scheduler = {"scheduler": schedule, "interval": "step", "name": LR_TAG}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # ------------------------------------------------------------------ facts
    def num_parameters(self) -> int:
        return self.model.num_parameters()

    def flops_per_token(self, seq_len: int) -> float:
        return flops_per_token(self.model, seq_len)

    @property
    def ffn_modules(self) -> list[nn.Module]:
        return [layer.ffn for layer in self.model.layers]
