"""Strategies: FSDP2 as pure data parallelism, its mesh, and gradient clipping that works under FSDP1."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy

from lit_ffn.errors import UserError


def data_parallel_mesh(device_mesh: Any) -> Any:
    """The data-parallel sub-mesh of Lightning's ``ModelParallelStrategy`` mesh; refuses tensor parallelism,
    which lit_ffn has no plan for."""
    if device_mesh is None:
        return None
    names = device_mesh.mesh_dim_names or ()
    if "tensor_parallel" in names and device_mesh["tensor_parallel"].size() > 1:
        raise UserError(
            f"ModelParallelStrategy with tensor_parallel_size={device_mesh['tensor_parallel'].size()}: lit_ffn "
            "shards with FSDP2 only; use lit_ffn.distributed.FSDP2Strategy (configs/strategy/fsdp2.yaml), or "
            "ModelParallelStrategy with data_parallel_size = devices × num_nodes and tensor_parallel_size=1"
        )
    return device_mesh["data_parallel"] if "data_parallel" in names else device_mesh


class FSDP2Strategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` as pure FSDP2 data parallelism.

    ``data_parallel_size`` is the world size (``devices × num_nodes``) and
    ``tensor_parallel_size`` is 1, whatever the launch — the parent's
    ``"auto"`` would mean data-parallel across nodes and tensor-parallel within
    one, which lit_ffn does not implement.  Everything else (device mesh,
    distributed checkpoints, ``configure_model()`` contract, launchers) is the
    parent's.

    Args:
        save_distributed_checkpoint: one shard file per rank in a checkpoint
            directory (default); ``False`` gathers a single file on rank 0.
        process_group_backend, timeout: as ``ModelParallelStrategy``.
    """

    def __init__(
        self,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )

    def setup_environment(self) -> None:
        # num_nodes and the devices are known here (set by the accelerator connector); the parent reads
        # its own `_data_parallel_size` here, and takes no world size in its constructor that could be set later.
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def clip_gradients(
    module: Any, optimizer: Any, gradient_clip_val: float | None, gradient_clip_algorithm: str | None
) -> None:
    """``LightningModule.configure_gradient_clipping`` that also clips by norm under FSDP1.

    Lightning's ``FSDPStrategy`` cannot clip by norm (its precision plugin
    raises: ``torch.nn.utils.clip_grad_norm_`` on FSDP1's flat shards would
    compute each rank's own norm).  FSDP1's root module has the correct,
    sharding-aware ``FullyShardedDataParallel.clip_grad_norm_``; call it.
    Every other strategy (FSDP2's DTensor gradients included) goes through
    Lightning's own clipping.
    """
    from lightning.pytorch.strategies import FSDPStrategy

    strategy = module.trainer.strategy
    norm = gradient_clip_algorithm in (None, "norm")
    if gradient_clip_val and norm and isinstance(strategy, FSDPStrategy):
        strategy.model.clip_grad_norm_(gradient_clip_val)
        return
    module.clip_gradients(
        optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm
    )


__all__ = ["FSDP2Strategy", "clip_gradients", "data_parallel_mesh"]
