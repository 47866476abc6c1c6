"""``lit_ffn consolidate CKPT OUT``: a distributed (sharded) checkpoint → one file for one CPU.

Under FSDP2 (``configs/strategy/fsdp2.yaml``) and FSDP1 with sharded state
dicts, ``last.ckpt`` is a ``torch.distributed.checkpoint`` (DCP) directory:
one shard file per rank, DCP's ``.metadata``, and Lightning's ``meta.pt``
(step, loops, hyper-parameters, …).  This command gathers the full tensors
with PyTorch's own converter (``torch.distributed.checkpoint.format_utils.dcp_to_torch_save``,
no process group needed), merges ``meta.pt`` back in, and writes the layout
of a Lightning weights-only checkpoint:

    {"state_dict": {name: full tensor}, "hyper_parameters": …, "global_step": …, "epoch": …, "loops": …, …}

so ``LitDecoder.load_from_checkpoint(OUT, map_location="cpu")``,
``torch.load(OUT)["state_dict"]`` and ``lit_ffn validate|test --ckpt_path OUT``
work on one CPU.  Optimizer and scheduler states are left out (as with
``save_weights_only``): to continue training, resume from the sharded
checkpoint itself.  The whole model must fit in CPU memory.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

import torch

from lit_ffn.errors import UserError, run_tool

#: Lightning's extra file in a distributed checkpoint directory (lightning.fabric.utilities.load._METADATA_FILENAME)
METADATA_FILENAME = "meta.pt"
#: Entries a weights-only Lightning checkpoint does not have.
TRAINING_STATE_KEYS = ("optimizer_states", "lr_schedulers", "callbacks")


def _check_input(checkpoint: Path) -> Path:
    if not checkpoint.exists():
        raise UserError(f"checkpoint {checkpoint} does not exist")
    resolved = checkpoint.resolve()
    if resolved.is_file():
        raise UserError(
            f"{checkpoint} is already a single-file checkpoint (load it with torch.load or "
            "LitDecoder.load_from_checkpoint); consolidate is for sharded checkpoint directories (FSDP)"
        )
    if not (resolved / ".metadata").is_file():
        raise UserError(
            f"{checkpoint} is a directory but not a torch.distributed.checkpoint (no .metadata file): "
            "was it written completely, under FSDP/FSDP2 with distributed checkpoints?"
        )
    return resolved


def load_sharded_checkpoint(checkpoint: Path, scratch: Path) -> dict[str, Any]:
    """The full contents of a DCP checkpoint directory plus its ``meta.pt``, on CPU."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(checkpoint, scratch)
    try:
        contents = torch.load(scratch, map_location="cpu", weights_only=False)
    finally:
        scratch.unlink(missing_ok=True)
    meta = checkpoint / METADATA_FILENAME
    if meta.is_file():
        contents.update(torch.load(meta, map_location="cpu", weights_only=False))
    return contents


def to_weights_only(contents: dict[str, Any]) -> dict[str, Any]:
    """Lightning's single-file, weights-only layout from a DCP checkpoint's contents.

    The model is under ``state_dict`` (ModelParallelStrategy / FSDP2) or
    ``model`` (FSDPStrategy); optimizers under ``optimizer_<i>``, dropped.
    """
    if "state_dict" not in contents and "model" not in contents:
        raise UserError("the checkpoint holds no model state ('state_dict' or 'model')")
    state_dict = contents.pop("state_dict", None)
    if state_dict is None:
        state_dict = contents.pop("model")
    for key in [k for k in contents if re.fullmatch(r"optimizer_\d+", k) or k in TRAINING_STATE_KEYS]:
        del contents[key]
    return {"state_dict": state_dict, **contents}


def consolidate(checkpoint: Path, output: Path, overwrite: bool = False) -> Path:
    """Write the single-file checkpoint for ``checkpoint`` (a DCP directory) to ``output``; returns ``output``."""
    checkpoint, output = Path(checkpoint), Path(output)
    source = _check_input(checkpoint)
    if output.exists() and not overwrite:
        raise UserError(f"{output} already exists: choose another path, delete it, or pass --overwrite")
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = output.with_name(f".{output.name}.dcp.tmp")
    partial = output.with_name(f".{output.name}.partial")
    single = to_weights_only(load_sharded_checkpoint(source, scratch))
    torch.save(single, partial)
    os.replace(partial, output)  # never a half-written OUT
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lit_ffn consolidate",
        description="Turn a sharded (FSDP/FSDP2) checkpoint directory into one file that loads on one CPU.",
    )
    parser.add_argument("checkpoint", help="checkpoint directory, e.g. runs/<exp>/<ffn>/seed_0/checkpoints/last.ckpt")
    parser.add_argument("output", help="the single-file checkpoint to write, e.g. last.consolidated.ckpt")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

    def body() -> None:
        args = parser.parse_args(argv)
        output = consolidate(Path(args.checkpoint), Path(args.output), overwrite=args.overwrite)
        n_params = sum(
            t.numel()
            for t in torch.load(output, map_location="cpu", weights_only=False)["state_dict"].values()
            if isinstance(t, torch.Tensor)
        )
        print(f"wrote {output} ({n_params:,} parameter values, {output.stat().st_size / 2**20:.1f} MiB)")

    return run_tool("lit_ffn consolidate", body)
