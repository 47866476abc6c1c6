"""DynamicGEGLU's s and b are logged under every sharding: also where a rank holds none of them.

FSDP1 (``FSDPStrategy``, GPU only) with ``use_orig_params`` leaves each original parameter as a view
into the rank's flat shard: outside forward, a rank that owns no element of ``s`` sees an empty
tensor (measured before: rank 0 of 4 logged nothing).  The simulation below gives the callback exactly
that view — the learned scalars are empty outside the FFN's forward and whole inside it — which is
what every rank but the owner sees under FSDP1.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lit_ffn.callbacks import GateStatistics
from lit_ffn.ffn import DynamicGEGLU
from tests.callbacks.test_callbacks import fit, read_events, scalars, tiny_module


def _shard_like_fsdp1(ffn: DynamicGEGLU) -> None:
    inside = {"forward": False}
    real = ffn.gate_scalars

    def gate_scalars() -> dict[str, torch.Tensor]:
        if inside["forward"]:
            return real()
        return {name: value.new_empty(0) for name, value in real().items()}

    ffn.gate_scalars = gate_scalars  # type: ignore[method-assign]
    ffn.register_forward_pre_hook(lambda module, args: inside.update(forward=True))
    ffn.register_forward_hook(lambda module, args, output: inside.update(forward=False))


def test_learned_scalars_are_logged_when_this_rank_holds_no_shard_of_them(tmp_path: Path) -> None:
    module = tiny_module(DynamicGEGLU)
    for ffn in module.ffn_modules:
        _shard_like_fsdp1(ffn)
    events = read_events(fit(tmp_path, module, [GateStatistics(every_n_steps=1)], steps=2))
    for layer in range(len(module.ffn_modules)):
        s, b = scalars(events, f"z_gates/layer_{layer:02d}/s"), scalars(events, f"z_gates/layer_{layer:02d}/b")
        assert s[0] == torch.tensor(0.1).item() and b[0] == 0.0  # step 0: the initial values, before any update
        assert s[1] != s[0]  # and then what training made of them
