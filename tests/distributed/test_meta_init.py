"""A decoder built on the meta device and sharded by FSDP2 starts exactly as one built on a CPU:
every rank's shard is its slice of the tensor the per-name stream draws (lit_ffn.seeds)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from lit_ffn.distributed.parallelize import parallelize
from lit_ffn.ffn import IsoGMLP, ReLUFFN, SwiGLU
from lit_ffn.model import Decoder

SHAPE = {"vocab_size": 63, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16, "init_seed": 3}


@pytest.fixture
def two_rank_mesh():
    """Rank 1 of a 2-rank "fake" process group (torch's own test backend: collectives are no-ops), so one
    process sees the shard rank 1 would hold — the second slice, and for the 63-row embedding the shorter
    one; materialising needs no collective, so nothing is faked.  (Rank 1 only: device-mesh state cached
    by torch leaks from one fake group into the next within a process.)"""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    assert not dist.is_initialized()
    dist.init_process_group("fake", store=FakeStore(), rank=1, world_size=2)
    try:
        yield init_device_mesh("cpu", (2,), mesh_dim_names=("data_parallel",)), 1
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("ffn", [SwiGLU, ReLUFFN, IsoGMLP], ids=lambda f: f.__name__)
def test_meta_build_sharded_then_materialised_equals_the_cpu_build(two_rank_mesh, ffn) -> None:
    from torch.distributed.tensor import DTensor

    mesh, rank = two_rank_mesh
    reference = Decoder(ffn, **SHAPE).state_dict()
    with torch.device("meta"):
        model = Decoder(ffn, **SHAPE)
    parallelize(model, activation_checkpointing=True, mesh=mesh, device="cpu")
    state = model.state_dict()
    assert state.keys() == reference.keys()
    for name, tensor in state.items():
        assert isinstance(tensor, DTensor) and not tensor.is_meta, name
        local = tensor.to_local()
        expected = torch.chunk(reference[name], 2, dim=0)[rank]  # FSDP2: Shard(0), torch.chunk's split
        assert local.shape == expected.shape and torch.equal(local, expected), name
