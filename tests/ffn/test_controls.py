"""The positive control (lit_ffn.ffn.controls.NarrowSwiGLU) and its config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn.ffn import SwiGLU
from lit_ffn.ffn.controls import NarrowSwiGLU
from lit_ffn.ffn.registry import factory, resolve_variant, variant_name

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "controls" / "swiglu_quarter.yaml"


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dim", [32, 48, 64, 128, 384])
def test_quarter_width_at_every_model_width(dim: int) -> None:
    narrow, full = NarrowSwiGLU(dim), SwiGLU(dim)
    assert narrow.hidden_dim == round(full.hidden_dim / 4)
    assert n_params(narrow) == 3 * dim * narrow.hidden_dim
    assert abs(n_params(narrow) / n_params(full) - 0.25) < 0.02


def test_same_function_as_swiglu_of_its_width() -> None:
    torch.manual_seed(0)
    narrow = NarrowSwiGLU(64)
    twin = SwiGLU(64, hidden_dim=narrow.hidden_dim)
    twin.load_state_dict(narrow.state_dict())
    x = torch.randn(2, 5, 64)
    assert torch.equal(narrow(x), twin(x))


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_fraction_out_of_range_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be in"):
        NarrowSwiGLU(64, fraction=fraction)


def test_config_resolves_as_an_ablate_variant() -> None:
    name, path = resolve_variant(str(CONFIG))
    assert (name, path) == ("swiglu_quarter", CONFIG)
    spec = yaml.safe_load(CONFIG.read_text())["model"]["ffn"]
    ffn = factory(spec)(64)
    assert isinstance(ffn, NarrowSwiGLU) and ffn.hidden_dim == round(SwiGLU(64).hidden_dim / 4)
    assert variant_name(spec) == "NarrowSwiGLU"
