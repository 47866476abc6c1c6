"""Parameter names as wrappers rewrite them, mapped back to the :class:`~lit_ffn.model.Decoder`'s own.

FSDP1, activation checkpointing and ``torch.compile`` insert a component into every wrapped
parameter's name (``layers.0._checkpoint_wrapped_module.ffn.w_up.weight``).  Training (which
parameters decay), the downstream-evaluation callback (a gathered FSDP2 copy) and inference
(loading any checkpoint) all need the plain name, so the rule lives here, below all three: it
imports nothing from lit_ffn.
"""

from __future__ import annotations

#: Name components that wrappers insert into parameter names: FSDP1, activation checkpointing, torch.compile.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped_parameter_name(name: str) -> str:
    """``layers.0._checkpoint_wrapped_module.ffn.w_up.weight`` → ``layers.0.ffn.w_up.weight``."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


__all__ = ["WRAPPER_PREFIXES", "unwrapped_parameter_name"]
