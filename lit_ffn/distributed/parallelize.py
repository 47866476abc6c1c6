"""Scale-out: activation checkpointing, per-block ``torch.compile`` and FSDP2 for the decoder.

:func:`parallelize` is what ``LitDecoder.configure_model()`` calls.  It
applies, in torchtitan's order (``torchtitan/models/llama3/infra/parallelize.py``):

1. activation checkpointing of every :class:`~lit_ffn.model.Block`
   (``torch.distributed``'s ``checkpoint_wrapper``; a block's activations are
   recomputed in backward instead of stored: memory ∝ L·B·T·D block inputs
   instead of every intermediate, for ~⅓ more compute);
2. ``torch.compile`` of every block's ``forward``, in place (see
   :func:`apply_compile`), so the state-dict keys stay those of the plain
   model and checkpoints move freely between compiled and eager runs;
3. FSDP2 ``fully_shard`` of every block, then of the decoder (the root);
4. a decoder built on the meta device (no memory, no init) is then materialised on ``device``
   (``to_empty``) and initialised by :meth:`~lit_ffn.model.Decoder.init_weights`: every tensor (or
   FSDP2 shard) from the stream of its own name, so it starts exactly as the same model built on a CPU.

The root group holds the embedding, the final norm and (untied) head.  That
is also how the **tied** embedding/head is handled: the head weight is the
embedding matrix, used at the start *and* the end of ``Decoder.forward``
(which computes the loss itself), so it must stay unsharded for the whole
forward — exactly the lifetime of the root group's all-gather.  Both uses
accumulate into one unsharded gradient before the root's reduce-scatter.

Mixed precision under FSDP2 is FSDP2's own ``MixedPrecisionPolicy``, derived
from ``trainer.precision`` by :func:`mixed_precision_policy`:

==============  =====================  ==================  ==================
precision       stored (sharded) param  compute (gathered)  gradient reduce
==============  =====================  ==================  ==================
``32-true``     fp32                    fp32                fp32
``bf16-mixed``  fp32                    bf16                fp32
``bf16-true``   bf16                    bf16                fp32
==============  =====================  ==================  ==================

(``bf16-mixed`` also runs Lightning's autocast; with bf16 parameters it only
keeps its fp32 op list — softmax, norms — in fp32.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_ffn.errors import UserError
from lit_ffn.model import Decoder

#: trainer.precision values FSDP2 supports here, and the policy each one means.
FSDP2_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")


def mixed_precision_policy(precision: str) -> Any:
    """The FSDP2 ``MixedPrecisionPolicy`` for a Lightning ``trainer.precision`` (table in the module docstring)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    precision = str(precision)
    if precision in ("32-true", "32"):
        return MixedPrecisionPolicy()
    if precision == "bf16-mixed":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if precision == "bf16-true":
        return MixedPrecisionPolicy(reduce_dtype=torch.float32)
    raise UserError(
        f"trainer.precision={precision!r} is not supported with FSDP2 (lit_ffn.distributed.FSDP2Strategy): "
        f"use one of {', '.join(FSDP2_PRECISIONS)}"
    )


def blocks(decoder: Decoder) -> nn.ModuleList:
    return decoder.layers


def apply_activation_checkpointing(decoder: Decoder) -> None:
    """Wrap every block in ``checkpoint_wrapper`` (non-reentrant ``torch.utils.checkpoint``).

    The wrapper strips its ``_checkpoint_wrapped_module.`` prefix from state
    dicts, so checkpoints keep the plain keys.  No RNG is used in a block
    (no dropout), so the RNG state is not stashed for the recomputation.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper, checkpoint_wrapper

    for index, block in enumerate(blocks(decoder)):
        if not isinstance(block, CheckpointWrapper):
            blocks(decoder)[index] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(decoder: Decoder, backend: str = "inductor") -> None:
    """``torch.compile`` every block's ``forward``: the repeated structure compiles once and is reused.

    torchtitan swaps each block for ``torch.compile(block)``, an
    ``OptimizedModule`` whose ``_orig_mod.`` prefix then appears in plain
    (DDP, single-device) state dicts.  Compiling the bound ``forward`` in place
    compiles the same region — the block's body, with the activation
    checkpoint inside it and FSDP2's hooks (registered on the module, run by
    ``nn.Module.__call__``) outside it — and keeps every key unchanged.
    """
    for block in blocks(decoder):
        if not is_compiled(block):
            block.forward = torch.compile(block.forward, backend=backend)


def is_compiled(block: nn.Module) -> bool:
    return "forward" in vars(block) and hasattr(vars(block)["forward"], "_torchdynamo_orig_callable")


def apply_fully_shard(
    decoder: Decoder, mesh: Any, precision: str = "32-true", reshard_after_forward: bool = True
) -> None:
    """FSDP2: ``fully_shard`` every block, then the decoder (root: embedding, final norm, head)."""
    from torch.distributed.fsdp import fully_shard

    policy = mixed_precision_policy(precision)
    for block in blocks(decoder):
        fully_shard(block, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(decoder, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_after_forward)


def is_fully_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def is_on_meta(decoder: nn.Module) -> bool:
    """Whether any parameter of ``decoder`` is still on the meta device (built without memory)."""
    return any(param.is_meta for param in decoder.parameters())


def materialize(decoder: Decoder, device: torch.device | str) -> Decoder:
    """A decoder built on the meta device (sharded or not): storage on ``device``, then the initial
    weights of :meth:`~lit_ffn.model.Decoder.init_weights` (by name: as if built there, shard by shard)."""
    if is_on_meta(decoder):
        decoder.to_empty(device=device)
        decoder.init_weights()
    return decoder


def parallelize(
    decoder: Decoder,
    *,
    activation_checkpointing: bool = False,
    compile: bool = False,
    mesh: Any | None = None,
    precision: str = "32-true",
    compile_backend: str = "inductor",
    device: torch.device | str = "cpu",
) -> Decoder:
    """Apply AC, then per-block compile, then FSDP2 (only when ``mesh`` is given: ModelParallelStrategy),
    then materialise a decoder built on the meta device on ``device`` (:func:`materialize`).

    Idempotent: Lightning calls ``configure_model()`` once per ``fit``/``validate``/…
    of a Trainer, and a decoder that is already sharded is left as it is.
    ``mesh`` is the data-parallel 1-D device mesh (``LightningModule.device_mesh["data_parallel"]``).
    """
    if is_fully_sharded(decoder):
        return materialize(decoder, device)
    if activation_checkpointing:
        apply_activation_checkpointing(decoder)
    if compile:
        apply_compile(decoder, backend=compile_backend)
    if mesh is not None:
        apply_fully_shard(decoder, mesh, precision=precision)
    return materialize(decoder, device)


__all__ = [
    "FSDP2_PRECISIONS",
    "apply_activation_checkpointing",
    "apply_compile",
    "apply_fully_shard",
    "is_compiled",
    "is_fully_sharded",
    "is_on_meta",
    "materialize",
    "mixed_precision_policy",
    "parallelize",
]
