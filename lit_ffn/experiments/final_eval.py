"""The final validation loss of a run on the **whole** validation split, block by block.

``lit_ffn ablate`` calls :func:`evaluate_run` once a run has trained to ``trainer.max_steps``
(before ``--clean-checkpoints`` can delete its checkpoint).  It loads ``<run>/checkpoints/last.ckpt``
through :func:`lit_ffn.inference.loading.load_model` (the weights the run ended with, built from the
checkpoint's own ``model`` section) and evaluates every block of ``seq_len + 1`` tokens of the
dataset's ``val/`` split — whatever ``data.val_blocks`` the run validated on during training — with
the training loss function (:func:`lit_ffn.loss.linear_cross_entropy`, fp32, no autocast)::

    ℓ_b = (1/T) Σ_{t<T} −log p(x_{b,t+1} | x_{b,≤t})      block b: (T + 1,) tokens, T = seq_len
    L   = (1/B) Σ_b ℓ_b                                  B blocks (every block has T targets)

The per-block losses ``ℓ_b`` go to ``<run>/final_eval.json`` and ``L`` into the run's ``DONE``
record, with ``block_docs``: for each block the document its first token belongs to (the number of
end-of-document tokens, ``meta.json``'s ``eos_id``, in the blocks before it), so that the seed × block
interval resamples the blocks of one document together.  Every run of a study is scored on the same blocks in the same order, so variant − baseline
differences pair up block by block: :func:`lit_ffn.experiments.stats.seed_block_difference` puts
the validation set's own sampling noise into the CI of a difference.

Block ``b`` is the ``b``-th block of :class:`lit_ffn.data.datamodule.ValBlocks` (one rank, all
blocks), so ``L`` equals the run's logged ``val/loss`` when it validated on the whole split in fp32
(up to float summation order).

Weight averaging (``--config configs/averaging/ema.yaml``, :mod:`lit_ffn.training.averaging`): the
checkpoint's ``state_dict`` is then the averaged model θ̄, and ``L`` (``loss``, ``block_losses``) is θ̄'s;
the trained weights θ (the checkpoint's ``current_model_state``) are scored too, into ``loss_current``
and ``block_losses_current``, so each run also measures what the averaging changed, paired block by block.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from lit_ffn.errors import UserError
from lit_ffn.experiments.runfiles import FINAL_EVAL_FILE, read_final_eval, write_json

#: Blocks per forward pass (the body runs batched; the loss is taken block by block).
EVAL_BATCH = 8


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _losses(decoder: Any, blocks: Any, chunk: int, device: str) -> list[float]:
    """ℓ_b of every block (module docstring) for one decoder."""
    import torch

    from lit_ffn.loss import linear_cross_entropy

    losses: list[float] = []
    with torch.no_grad():
        for stored in blocks:  # (b, T + 1) int32
            batch = stored.to(device).long()
            hidden = decoder(batch[:, :-1])  # (b, T, D)
            for i in range(batch.shape[0]):
                losses.append(float(linear_cross_entropy(hidden[i], decoder.head_weight, batch[i, 1:], chunk)))
    return losses


def _block_docs(blocks: Any, eos: int) -> list[int]:
    """For each block (in :class:`ValBlocks` order), the document its first token is in: the number of
    end-of-document tokens in the blocks before it."""
    docs: list[int] = []
    document = 0
    for stored in blocks:  # (b, T + 1) int32
        for i in range(stored.shape[0]):
            docs.append(document)
            document += int((stored[i] == eos).sum())
    return docs


def _eos_id(data_dir: str) -> int | None:
    """The dataset's end-of-document id (``meta.json``'s ``eos_id``), None when it has none."""
    from lit_ffn.data import format as data_format

    try:
        value = data_format.read_meta(data_dir).get("eos_id")
    except UserError:
        return None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def block_losses(run_dir: Path, device: str | None = None) -> tuple[list[float], dict[str, Any]]:
    """``([ℓ_b for every validation block], facts)`` of the run's final checkpoint (module docstring).

    ``facts["averaged"]``: whether the checkpoint holds an averaged model; if so the losses are its, and
    ``facts["block_losses_current"]`` those of the trained (not averaged) weights."""
    from lit_ffn.data.datamodule import TokenDataModule, ValBlocks
    from lit_ffn.inference.loading import build_decoder, locate, model_section, read_checkpoint

    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    data = config.get("data") or {}
    if "data_dir" not in data or "seq_len" not in data:
        raise UserError(f"{run_dir}/config.yaml has no data.data_dir / data.seq_len: cannot evaluate its final loss")
    device = device or _device()
    located = locate(run_dir)
    contents = read_checkpoint(located.checkpoint)
    model = model_section(contents, located)
    seq_len, chunk = int(data["seq_len"]), model.get("loss_chunk_size", 1024)
    module = TokenDataModule(data_dir=str(data["data_dir"]), seq_len=seq_len, cache_dir=data.get("cache_dir"))
    n_blocks = module.num_blocks("val")
    if n_blocks == 0:
        raise UserError(
            f"the validation split of {data['data_dir']} holds no block of seq_len+1 = {seq_len + 1} tokens"
        )
    blocks = ValBlocks(module.location.split("val"), seq_len + 1, n_blocks, EVAL_BATCH, cache_dir=data.get("cache_dir"))
    decoder = build_decoder(model, contents["state_dict"], located.checkpoint).to(device)
    losses = _losses(decoder, blocks, chunk, device)
    step = contents.get("global_step")
    facts: dict[str, Any] = {"blocks": n_blocks, "seq_len": seq_len, "step": int(step) if isinstance(step, int) else None,
                             "data_dir": str(data["data_dir"]), "averaged": "current_model_state" in contents}  # fmt: skip
    eos = _eos_id(str(data["data_dir"]))
    if eos is not None:
        facts["block_docs"] = _block_docs(blocks, eos)
    if facts["averaged"]:  # Lightning's WeightAveraging: state_dict is the average, current_model_state θ
        decoder = build_decoder(model, contents["current_model_state"], located.checkpoint).to(device)
        facts["averaging"] = config.get("averaging")
        facts["block_losses_current"] = _losses(decoder, blocks, chunk, device)
    return losses, facts


def evaluate_run(run_dir: Path, device: str | None = None) -> dict[str, Any]:
    """Score the run's final checkpoint on every validation block and write ``final_eval.json``
    (atomically); returns the record.  An existing record is returned as it is (nothing recomputed)."""
    existing = read_final_eval(run_dir)
    if existing is not None:
        return existing
    if not (run_dir / "checkpoints" / "last.ckpt").exists():
        raise UserError(f"{run_dir} has no checkpoints/last.ckpt to evaluate (deleted by --clean-checkpoints?)")
    start = time.time()
    losses, facts = block_losses(run_dir, device)
    current = facts.pop("block_losses_current", None)
    record = {
        **facts,
        "loss": sum(losses) / len(losses),
        "block_losses": losses,
        "wall_s": round(time.time() - start, 2),
        "how": "last.ckpt, fp32, every block of the val split (lit_ffn.experiments.final_eval)"
        + ("; the averaged weights (its state_dict)" if facts["averaged"] else ""),
    }
    if current is not None:  # the trained weights, for what averaging changed
        record["loss_current"] = sum(current) / len(current)
        record["block_losses_current"] = current
    write_json(run_dir / FINAL_EVAL_FILE, record)
    return record


__all__ = ["EVAL_BATCH", "block_losses", "evaluate_run"]
