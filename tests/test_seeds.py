"""Seeds by role (lit_ffn.seeds): initial weights keyed by (init seed, tensor name); init and data
order as separate, overridable streams under seed_everything."""

from __future__ import annotations

import functools
import hashlib
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_ffn.distributed.parallelize import materialize
from lit_ffn.ffn import DynamicGEGLU, IsoGMLP, ReLUFFN, SwiGLU, matched_hidden_dim
from lit_ffn.model import Decoder
from lit_ffn.seeds import path_seed
from tests.conftest import tiny_fit_args

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")

SHAPE = {"vocab_size": 64, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16}
#: FFNs of different classes and widths: SwiGLU at its matched width and at 3/4 of it, ReLU (2 matrices,
#: 1.5x wider), IsoGMLP (2h-wide up projection + LayerNorm), DynamicGEGLU (extra LayerNorm, s, b).
FFNS = {
    "swiglu": SwiGLU,
    "swiglu_3/4": functools.partial(SwiGLU, hidden_dim=3 * matched_hidden_dim(32, 3) // 4),
    "relu": ReLUFFN,
    "iso_gmlp": IsoGMLP,
    "dynamic_geglu": DynamicGEGLU,
}


def decoder(ffn, init_seed: int, meta: bool = False, **shape) -> Decoder:
    if not meta:
        return Decoder(ffn, init_seed=init_seed, **{**SHAPE, **shape})
    with torch.device("meta"):
        built = Decoder(ffn, init_seed=init_seed, **{**SHAPE, **shape})
    return materialize(built, "cpu")


def shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in state.items() if ".ffn." not in name}


@pytest.mark.parametrize("meta", [False, True], ids=["cpu", "meta"])
def test_non_ffn_weights_do_not_depend_on_the_ffn(meta: bool) -> None:
    states = {name: decoder(ffn, 7, meta).state_dict() for name, ffn in FFNS.items()}
    reference = shared(states["swiglu"])
    assert len(reference) == 2 + 2 * 8  # embed, final norm; per layer 4 projections + 4 norms
    for name, state in states.items():
        other = shared(state)
        assert other.keys() == reference.keys(), name
        for key in reference:
            assert torch.equal(other[key], reference[key]), f"{name}: {key}"
    # and the init seed does move them (the equalities above are not a constant init)
    moved = shared(decoder(SwiGLU, 8, meta).state_dict())
    assert all(not torch.equal(moved[k], reference[k]) for k in reference if k.endswith("proj.weight"))


def test_meta_materialised_equals_cpu_built_tensor_for_tensor() -> None:
    for name, ffn in FFNS.items():
        cpu, meta = decoder(ffn, 3).state_dict(), decoder(ffn, 3, meta=True).state_dict()
        assert cpu.keys() == meta.keys()
        for key in cpu:
            assert torch.equal(cpu[key], meta[key]), f"{name}: {key}"


def test_a_tensor_depends_on_its_seed_name_and_shape_only() -> None:
    """More layers, another FFN, another order of construction: layer 0 is unchanged; each weight is
    N(0, init_std²) drawn from torch.Generator().manual_seed(path_seed(seed, name))."""
    small = decoder(SwiGLU, 11).state_dict()
    deep = decoder(ReLUFFN, 11, n_layers=3).state_dict()
    for key, value in small.items():
        if ".ffn." not in key:
            assert torch.equal(deep[key], value), key
    generator = torch.Generator().manual_seed(path_seed(11, "layers.1.attn.k_proj.weight"))
    expected = torch.empty(small["layers.1.attn.k_proj.weight"].shape).normal_(0.0, 0.02, generator=generator)
    assert torch.equal(small["layers.1.attn.k_proj.weight"], expected)
    # FFNs of the same parameter names and shapes (SwiGLU, DynamicGEGLU) start their matrices identically too
    gated = decoder(DynamicGEGLU, 11).state_dict()
    assert torch.equal(gated["layers.0.ffn.up_proj.weight"], small["layers.0.ffn.up_proj.weight"])


def test_path_seed_is_a_stable_hash() -> None:
    digest = hashlib.blake2b(b"5/layers.0.attn.q_proj.weight", digest_size=8).digest()
    assert path_seed(5, "layers.0.attn.q_proj.weight") == int.from_bytes(digest, "little") & (2**63 - 1)
    assert path_seed(5, "layers.0._checkpoint_wrapped_module.attn.q_proj.weight") == path_seed(
        5, "layers.0.attn.q_proj.weight"
    )
    assert path_seed(5, "a") != path_seed(6, "a") and path_seed(5, "a") != path_seed(5, "b")


def test_default_init_seed_is_the_seed_torch_was_given() -> None:
    torch.manual_seed(4)
    torch.rand(3)  # draws from the global stream do not change the default
    assert Decoder(SwiGLU, **SHAPE).init_seed == 4
    assert torch.equal(Decoder(SwiGLU, **SHAPE).embed.weight, decoder(SwiGLU, 4).embed.weight)


# ---- the CLI: one knob, two streams ---------------------------------------------------------------


def built(data_dir: Path, root: Path, *flags: str) -> tuple[dict[str, torch.Tensor], list[str], object]:
    """(initial weights, digests of the first 3 training batches, parsed config) of a fit's setup."""
    from lit_ffn.training.lightning_cli import LitFFNCLI

    cli = LitFFNCLI(args=tiny_fit_args(data_dir, root, *flags)[1:], run=False)
    cli.datamodule.setup("fit")
    batches = [hashlib.sha1(b.numpy().tobytes()).hexdigest() for b in islice(cli.datamodule.train_dataloader(), 3)]
    return cli.model.model.state_dict(), batches, cli.config


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_init_only_and_data_only_seed_changes(tiny_dataset: Path, tmp_path: Path) -> None:
    w0, b0, c0 = built(tiny_dataset, tmp_path)
    assert (c0.model.init_seed, c0.data.seed) == (0, 0)  # both derived from seed_everything=0
    # init only: another init seed, same data order
    w1, b1, c1 = built(tiny_dataset, tmp_path, "--model.init_seed=1")
    assert not same_weights(w0, w1) and b1 == b0 and c1.data.seed == 0
    # data only: another seed_everything with the init seed held
    w2, b2, c2 = built(tiny_dataset, tmp_path, "--seed_everything=1", "--model.init_seed=0")
    assert same_weights(w0, w2) and b2 != b0 and (c2.model.init_seed, c2.data.seed) == (0, 1)
    # data only, through data.seed
    w3, b3, _ = built(tiny_dataset, tmp_path, "--data.seed=1")
    assert same_weights(w0, w3) and b3 == b2
    # the one knob moves both
    w4, b4, c4 = built(tiny_dataset, tmp_path, "--seed_everything=1")
    assert same_weights(w4, w1) and b4 == b2 and (c4.model.init_seed, c4.data.seed) == (1, 1)


def test_the_seeds_used_are_in_config_yaml_checkpoint_and_hparams(tiny_dataset: Path, tmp_path: Path) -> None:
    import yaml

    from lit_ffn.callbacks.hparams import run_hyperparameters
    from lit_ffn.cli import main

    assert main(tiny_fit_args(tiny_dataset, tmp_path, "--seed_everything=3", "--data.seed=5", steps=1)) == 0
    run = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_3"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["seed_everything"], config["model"]["init_seed"], config["data"]["seed"]) == (3, 3, 5)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["init_seed"] == 3

    module = SimpleNamespace(hparams={"init_seed": 3})  # what run_hyperparameters reads
    trainer = SimpleNamespace(datamodule=SimpleNamespace(seed=5, seq_len=32, batch_size=4), accumulate_grad_batches=1,
                              world_size=1, max_steps=1, logger=None, precision="32", gradient_clip_val=0)  # fmt: skip
    params = run_hyperparameters(trainer, module)  # type: ignore[arg-type]
    assert (params["init_seed"], params["data_seed"]) == (3, 5)
