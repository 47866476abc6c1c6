"""Scale-out: how the decoder is wrapped (``parallelize.py``), the strategies that run it
(``strategy.py``), and turning a sharded checkpoint into one file (``consolidate.py``).

Configs name the strategy ``lit_ffn.distributed.FSDP2Strategy`` (``configs/strategy/fsdp2.yaml``).
"""

from lit_ffn.distributed.parallelize import (
    FSDP2_PRECISIONS,
    apply_activation_checkpointing,
    apply_compile,
    apply_fully_shard,
    is_compiled,
    is_fully_sharded,
    mixed_precision_policy,
    parallelize,
)
from lit_ffn.distributed.strategy import FSDP2Strategy, clip_gradients, data_parallel_mesh

__all__ = [
    "FSDP2_PRECISIONS",
    "FSDP2Strategy",
    "apply_activation_checkpointing",
    "apply_compile",
    "apply_fully_shard",
    "clip_gradients",
    "data_parallel_mesh",
    "is_compiled",
    "is_fully_sharded",
    "mixed_precision_policy",
    "parallelize",
]
