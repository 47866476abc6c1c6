"""``DownstreamEval``: lm-evaluation-harness tasks scored with the model being trained, every N steps.

At small scale accuracy on a multiple-choice task moves in steps of 1/n and sits at chance for a long
time; the probability the model gives the correct answer moves smoothly and predicts later accuracy
(DataDecide, Magnusson et al. 2025; OLMo's in-loop evaluation logs it for that reason).  So each task
logs, besides lm_eval's own metrics (``acc``, ``acc_norm`` …):

* ``prob_correct`` — mean over documents of p(gold | choices) = softmax(ℓ₁ … ℓ_k)[gold], with ℓᵢ = Σ log
  p(choiceᵢ tokens | context) the log-likelihoods lm_eval computed for the k choices (multiple choice);
* ``logprob_correct`` — mean over documents of ℓ_gold (the log-likelihood of the correct continuation).

Where it goes: ``val/tasks/<task>/<metric>`` in every logger at the optimizer step (TensorBoard's ``val``
group, after ``val/loss``), ``val/tasks/seconds`` (the cost of the call), and one JSON line per call in
``<run dir>/downstream.jsonl`` (step, seconds, settings, scores), rewritten atomically.

Cost is bounded by ``limit`` documents per task (lm_eval's ``--limit``), and measured: every call logs its
wall time.  The model is scored as it is at that step, in eval mode, without gradients, in full precision.

Distributed: rank 0 scores while the other ranks wait at a barrier.  Under DDP (and on one device) rank 0
scores the training module's own decoder (every rank holds all weights).  Under FSDP2 the parameters are
sharded DTensors, so all ranks first gather the full state dict (``get_model_state_dict(full_state_dict,
cpu_offload)``: a collective) and rank 0 scores a full copy built from it — one model's worth of memory on
rank 0 for the length of the call.  Sharding the requests instead would need every rank to run the same
number of forward passes (FSDP2's all-gathers are collectives) while lm_eval splits documents unevenly.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lit_ffn.errors import UserError

#: The tag prefix of every downstream metric.
TAG_PREFIX = "val/tasks"
RESULTS_FILE = "downstream.jsonl"


def choice_likelihoods(samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``prob_correct`` and ``logprob_correct`` (module docstring) from lm_eval's logged samples of one
    multiple-choice task: each sample's ``filtered_resps`` holds ``(loglikelihood, is_greedy)`` per choice and
    ``target`` the gold index.  Empty when the task is not multiple choice."""
    probs, logprobs = [], []
    for sample in samples:
        gold, responses = sample.get("target"), sample.get("filtered_resps") or []
        lls = [float(r[0][0] if isinstance(r[0], (list, tuple)) else r[0]) for r in responses]
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(lls) or len(lls) < 2:
            continue
        top = max(lls)
        probs.append(math.exp(lls[gold] - top) / sum(math.exp(ll - top) for ll in lls))
        logprobs.append(lls[gold])
    if not probs:
        return {}
    return {"prob_correct": sum(probs) / len(probs), "logprob_correct": sum(logprobs) / len(logprobs)}


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


class DownstreamEval(Callback):
    """Scores lm-eval ``tasks`` with the model being trained every ``every_n_steps`` optimizer steps.

    Args:
        tasks: lm_eval task / group / tag names, or task YAML paths (``lit_ffn evaluate``'s ``--tasks``).
        every_n_steps: optimizer steps between calls (also after the last step, unless ``at_end`` is off).
        limit: documents per task per call (lm_eval's ``--limit``; None: all — mind the cost).
        include_path: a directory of your own task YAMLs (e.g. local jsonl data; README, "Evaluating").
        batch_size: requests per forward pass.
        num_fewshot: few-shot examples (None: each task's default).
        max_length: the longest input in tokens (default: the run's ``data.seq_len``).
        at_end: score once more after the last step.
        seed: lm_eval's seeds (few-shot sampling); the same documents every call.
    """

    def __init__(
        self,
        tasks: list[str],
        every_n_steps: int = 500,
        limit: int | None = 100,
        include_path: str | None = None,
        batch_size: int = 16,
        num_fewshot: int | None = None,
        max_length: int | None = None,
        at_end: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not tasks:
            raise UserError("DownstreamEval: tasks is empty; name at least one lm_eval task, e.g. [arc_easy]")
        if every_n_steps < 1:
            raise UserError(f"DownstreamEval: every_n_steps must be >= 1, got {every_n_steps}")
        if limit is not None and limit < 1:
            raise UserError(f"DownstreamEval: limit must be >= 1 documents per task (or null: all), got {limit}")
        self.tasks = list(dict.fromkeys(tasks))
        self.every_n_steps, self.limit, self.include_path = every_n_steps, limit, include_path
        self.batch_size, self.num_fewshot, self.max_length = batch_size, num_fewshot, max_length
        self.at_end, self.seed = at_end, seed
        self._manager: Any = None
        self._tokenizer: Any = None
        self._run_dir: Path | None = None
        self._last_step: int | None = None
        self.history: list[dict[str, Any]] = []  # this fit's calls (rank 0)

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != TrainerFn.FITTING:
            return
        from lit_ffn.inference.evaluate import quiet_lm_eval, require_lm_eval, task_manager

        require_lm_eval()
        quiet_lm_eval()
        if trainer.is_global_zero:  # unknown task names fail here, before any training
            self._manager = task_manager(self.tasks, self.include_path)
            self._tokenizer = self._dataset_tokenizer(trainer)

    @staticmethod
    def _dataset_tokenizer(trainer: Trainer) -> Any:
        from lit_ffn.data.format import read_meta
        from lit_ffn.data.tokenizer import load_tokenizer

        data_dir = getattr(trainer.datamodule, "data_dir", None)
        if data_dir is None:
            raise UserError("DownstreamEval needs the run's dataset (data.data_dir) to know its tokenizer")
        meta = read_meta(data_dir)
        return load_tokenizer(meta.get("tokenizer", "qwen3"))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast from rank 0: every rank asks
        self._run_dir = Path(log_dir) if log_dir is not None else None
        self._last_step = trainer.global_step  # a resumed fit does not re-score its first step

    # ------------------------------------------------------------------ when
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step != self._last_step and step % self.every_n_steps == 0:
            self.score(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.at_end and trainer.global_step != self._last_step:
            self.score(trainer, pl_module)

    # ------------------------------------------------------------------ scoring
    def score(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any] | None:
        """Score the tasks now (every rank calls it); rank 0 logs and returns the record, others None."""
        step = self._last_step = trainer.global_step
        decoder = self._scoring_decoder(trainer, pl_module)  # a collective under FSDP2
        record = None
        if trainer.is_global_zero:
            record = self._evaluate(decoder, pl_module, step)
            record["settings"]["weights"] = "training module" if decoder is pl_module.model else "gathered copy"
            self._publish(trainer, record)
        trainer.strategy.barrier("DownstreamEval")
        return record

    @staticmethod
    def _scoring_decoder(trainer: Trainer, pl_module: LightningModule) -> torch.nn.Module | None:
        """The decoder rank 0 scores: the module's own, or under FSDP2 a full copy (module docstring)."""
        from torch.distributed.tensor import DTensor

        model = pl_module.model
        if not any(isinstance(param, DTensor) for param in model.parameters()):
            return model if trainer.is_global_zero else None
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        from lit_ffn.model import Decoder
        from lit_ffn.parameter_names import unwrapped_parameter_name

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)  # every rank; only rank 0 receives it
        if not trainer.is_global_zero:
            return None
        hparams = pl_module.hparams
        shape = {key: hparams[key] for key in inspect.signature(Decoder).parameters if key in hparams and key != "ffn"}
        decoder = Decoder(ffn=pl_module.ffn_factory, **shape)
        decoder.load_state_dict({unwrapped_parameter_name(key): value for key, value in state.items()})
        return decoder.to(pl_module.device)

    def _evaluate(self, decoder: Any, pl_module: LightningModule, step: int) -> dict[str, Any]:
        import lm_eval

        from lit_ffn.inference.evaluate import build_tasks, flatten_results
        from lit_ffn.inference.lm_eval_adapter import LitFFNLM

        start = time.perf_counter()
        was_training = decoder.training
        quiet = os.environ.get("TQDM_DISABLE")
        os.environ["TQDM_DISABLE"] = "1"  # lm_eval's progress bars, every call, would bury the training log
        seq_len = getattr(pl_module.trainer.datamodule, "seq_len", None)
        context = self.max_length or seq_len or 2048
        try:
            lm = LitFFNLM(
                decoder, self._tokenizer, max_length=context, batch_size=self.batch_size,
                device=pl_module.device, seed=self.seed,
            )  # fmt: skip
            raw = (
                lm_eval.simple_evaluate(
                    model=lm,
                    tasks=build_tasks(self._manager, self.tasks),
                    task_manager=self._manager,
                    num_fewshot=self.num_fewshot,
                    limit=self.limit,
                    bootstrap_iters=0,  # standard errors of means need no bootstrap; others are not worth the time
                    log_samples=True,  # for prob_correct / logprob_correct
                    random_seed=self.seed,
                    numpy_random_seed=self.seed,
                    torch_random_seed=self.seed,
                    fewshot_random_seed=self.seed,
                )
                or {}
            )
        finally:
            decoder.train(was_training)
            if quiet is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = quiet
        scores = flatten_results(raw)
        for task, samples in (raw.get("samples") or {}).items():
            scores.setdefault(task, {}).update(choice_likelihoods(samples))
        return {
            "step": step,
            "seconds": time.perf_counter() - start,
            "settings": {"tasks": self.tasks, "limit": self.limit, "num_fewshot": self.num_fewshot,
                         "max_length": context, "seed": self.seed, "lm_eval_version": lm_eval.__version__},
            "scores": scores,
        }  # fmt: skip

    def _publish(self, trainer: Trainer, record: dict[str, Any]) -> None:
        metrics = {f"{TAG_PREFIX}/seconds": record["seconds"]}
        for task, values in record["scores"].items():
            for name, value in values.items():
                if "_stderr" not in name and value == value:  # NaN: a metric lm_eval could not compute
                    metrics[f"{TAG_PREFIX}/{task}/{name}"] = value
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=record["step"])
        self.history.append(record)
        if self._run_dir is not None:
            path = self._run_dir / RESULTS_FILE
            previous = path.read_text() if path.is_file() else ""
            _write_atomically(path, previous + json.dumps(record) + "\n")
        shown = ", ".join(
            f"{task} {name}={value:.4f}"
            for task, values in record["scores"].items()
            for name, value in values.items()
            if name in ("acc", "prob_correct")
        )
        rank_zero_info(f"DownstreamEval: step {record['step']}: {shown} ({record['seconds']:.1f} s)")


__all__ = ["RESULTS_FILE", "TAG_PREFIX", "DownstreamEval", "choice_likelihoods"]
