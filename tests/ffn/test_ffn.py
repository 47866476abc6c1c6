"""Tests of the FFN zoo (lit_ffn.ffn) and its configs (configs/ffn/*.yaml)."""

from __future__ import annotations

import importlib
import inspect
import math
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from lit_ffn.ffn import (
    BUILTIN_FFNS,
    GEGLU,
    GELUFFN,
    DynamicGEGLU,
    IsoGMLP,
    SwiGLU,
    matched_hidden_dim,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "ffn"
NAMES = sorted(BUILTIN_FFNS)
DIM = 64
TWO_MATRIX = {"relu", "gelu", "gelu_tanh", "silu", "relu2"}


def config_init_args(name: str) -> dict[str, Any]:
    """The ``init_args`` of ``configs/ffn/<name>.yaml`` (e.g. ``approximate: tanh``)."""
    config = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    return config["model"]["ffn"].get("init_args", {})


def build(name: str, dim: int = DIM, **kwargs: Any) -> nn.Module:
    """Instantiate a built-in exactly as its config does, plus ``kwargs``."""
    torch.manual_seed(0)
    return BUILTIN_FFNS[name](dim, **{**config_init_args(name), **kwargs})


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def n_params_of(name: str, dim: int) -> int:
    """Parameter count of a built-in, constructed on the meta device (no init cost)."""
    with torch.device("meta"):
        return n_params(build(name, dim))


def randomize_(module: nn.Module) -> None:
    """Give every parameter (LayerNorm affine, s, b included) a random value."""
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() == 1:  # DynamicGEGLU's s, b: keep α = σ(s·‖·‖ + b) out of saturation
                p.copy_(torch.randn_like(p) * 0.1)
            else:  # vectors (LayerNorm affine, biases) around 1, matrices around 0
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.ndim == 1 else 0.0))


# --------------------------------------------------------------------------- shapes and gradients


@pytest.mark.parametrize("name", NAMES)
def test_output_shape(name: str) -> None:
    ffn = build(name)
    for shape in [(2, 5, DIM), (7, DIM)]:
        x = torch.randn(*shape)
        y = ffn(x)
        assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    ffn = build(name, bias=True)
    x = torch.randn(2, 5, DIM, requires_grad=True)
    (ffn(x) * torch.randn(2, 5, DIM)).sum().backward()
    for pname, p in ffn.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_bias_flag(name: str) -> None:
    linears = [m for m in build(name).modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.bias is None for m in linears), "bias-free by default"
    assert all(m.bias is not None for m in build(name, bias=True).modules() if isinstance(m, nn.Linear))


# --------------------------------------------------------------------------- parameter matching

WIDTHS = [64, 128, 256, 512, 768, 1024]


def inherent_excess(name: str, dim: int) -> int:
    """Parameters beyond the matched ``6·dim·u`` that a variant needs by design.

    DynamicGEGLU: its LayerNorm(dim) affine plus the scalars s, b (2·dim + 2).
    IsoGMLP: its LayerNorm(h) affine on the gate half (2·h).  All others: 0.
    """
    if name == "dynamic_geglu":
        return 2 * dim + 2
    if name == "iso_gmlp":
        return 2 * matched_hidden_dim(dim, 3)
    return 0


@pytest.mark.parametrize("dim", WIDTHS)
def test_parameter_counts_exact(dim: int) -> None:
    unit = matched_hidden_dim(dim, 3) // 2
    swiglu = n_params_of("swiglu", dim)
    assert swiglu == 6 * dim * unit
    for name in NAMES:
        assert n_params_of(name, dim) == swiglu + inherent_excess(name, dim), name
    # 2-matrix and 3-matrix FFNs are exactly equal, not just close.
    assert {n_params_of(name, dim) for name in TWO_MATRIX} == {swiglu}


# IsoGMLP's excess is 2h / 3·dim·h = 2/(3·dim), i.e. > 1% below dim ≈ 67 (1.04% at
# dim=64), so the 1% bound is checked from dim=128 up; the exact counts above cover 64.
@pytest.mark.parametrize("dim", [w for w in WIDTHS if w >= 128])
def test_parameter_counts_within_one_percent_of_swiglu(dim: int) -> None:
    swiglu = n_params_of("swiglu", dim)
    for name in NAMES:
        rel = abs(n_params_of(name, dim) - swiglu) / swiglu
        assert rel <= 0.01, f"{name} at dim={dim}: {rel:.2%} off SwiGLU"
    assert n_params_of("iso_gmlp", 64) / n_params_of("swiglu", 64) - 1 == pytest.approx(2 / (3 * 64))


@pytest.mark.parametrize(
    ("dim", "multiple_of", "three", "two"),
    [
        (128, 32, 320, 480),  # 4·128/3 = 170.7 → unit 160
        (512, 32, 1344, 2016),  # 682.7 → 672
        (768, 32, 2048, 3072),  # 1024 exactly
        (4096, 256, 10752, 16128),  # 5461.3 → 5376
        (8, 32, 64, 96),  # 10.7 rounds to 0 units → floor of one unit (32)
    ],
)
def test_matched_hidden_dim(dim: int, multiple_of: int, three: int, two: int) -> None:
    assert matched_hidden_dim(dim, 3, multiple_of) == three
    assert matched_hidden_dim(dim, 2, multiple_of) == two


@pytest.mark.parametrize("name", NAMES)
def test_explicit_hidden_dim_overrides_default(name: str) -> None:
    ffn = build(name, hidden_dim=40)
    assert ffn.hidden_dim == 40 != matched_hidden_dim(DIM, 3)
    assert ffn.up_proj.in_features == DIM and ffn.down_proj.in_features == 40
    assert ffn.up_proj.out_features == (80 if name == "iso_gmlp" else 40)
    assert ffn(torch.randn(3, DIM)).shape == (3, DIM)


@pytest.mark.parametrize("name", NAMES)
def test_multiple_of_is_used(name: str) -> None:
    n_matrices = 2 if name in TWO_MATRIX else 3
    assert build(name, multiple_of=128).hidden_dim == matched_hidden_dim(DIM, n_matrices, 128)


# --------------------------------------------------------------------------- numerics vs. the formulas


def _mlp(act: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    return lambda m, x: act(x @ m.up_proj.weight.T) @ m.down_proj.weight.T


def _glu(act: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    return lambda m, x: (act(x @ m.gate_proj.weight.T) * (x @ m.up_proj.weight.T)) @ m.down_proj.weight.T


# Independent transcriptions of Vaswani (2017) eq. (2) / Shazeer (2020) eq. (6).
REFERENCE = {
    "relu": _mlp(lambda z: z.clamp_min(0)),
    "gelu": _mlp(lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))),
    "gelu_tanh": _mlp(lambda z: 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))),
    "silu": _mlp(lambda z: z / (1 + torch.exp(-z))),
    "relu2": _mlp(lambda z: z.clamp_min(0) ** 2),
    "glu": _glu(lambda z: 1 / (1 + torch.exp(-z))),
    "bilinear": _glu(lambda z: z),
    "reglu": _glu(lambda z: z.clamp_min(0)),
    "geglu": _glu(lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))),
    "geglu_tanh": _glu(lambda z: 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))),
    "swiglu": _glu(lambda z: z / (1 + torch.exp(-z))),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_formula(name: str) -> None:
    ffn = build(name).double()
    x = torch.randn(4, 3, DIM, dtype=torch.float64)
    torch.testing.assert_close(ffn(x), REFERENCE[name](ffn, x))


@pytest.mark.parametrize("cls", [GELUFFN, GEGLU, DynamicGEGLU])
def test_gelu_exact_and_tanh_differ(cls: type) -> None:
    torch.manual_seed(0)
    exact, tanh = cls(DIM), cls(DIM, approximate="tanh")
    tanh.load_state_dict(exact.state_dict())
    x = torch.randn(8, DIM) * 3
    y_exact, y_tanh = exact(x), tanh(x)
    assert not torch.allclose(y_exact, y_tanh, rtol=0, atol=1e-6)
    torch.testing.assert_close(y_exact, y_tanh, rtol=0, atol=1e-2)  # but only slightly
    first = exact.up_proj if cls is GELUFFN else exact.gate_proj
    for ffn in (exact, tanh):
        seen: dict[str, torch.Tensor] = {}
        ffn.set_gate_observer(lambda _, n, t, seen=seen: seen.setdefault(n, t))
        ffn(x)
        key = "hidden" if cls is GELUFFN else "gate"
        torch.testing.assert_close(seen[key], F.gelu(first(x), approximate=ffn.approximate))


def dynamic_geglu_reference(m: DynamicGEGLU, x: torch.Tensor) -> torch.Tensor:
    """Eq. (2)–(3), written out independently on the module's weights."""
    ln = F.layer_norm(x, (x.shape[-1],), m.norm.weight, m.norm.bias, m.norm.eps)
    alpha = torch.sigmoid(m.s * torch.linalg.vector_norm(ln, dim=-1, keepdim=True) + m.b)
    gate = F.gelu(F.linear(x, m.gate_proj.weight), approximate=m.approximate)
    return F.linear(alpha * gate * F.linear(x, m.up_proj.weight), m.down_proj.weight)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_dynamic_geglu_matches_equation(approximate: str) -> None:
    torch.manual_seed(0)
    ffn = DynamicGEGLU(DIM, approximate=approximate)
    randomize_(ffn)
    assert ffn.s.item() != pytest.approx(0.1) and ffn.b.item() != pytest.approx(0.0)
    alphas: list[torch.Tensor] = []
    ffn.set_gate_observer(lambda _, n, t: alphas.append(t) if n == "alpha" else None)
    x = torch.randn(2, 5, DIM)
    torch.testing.assert_close(ffn(x), dynamic_geglu_reference(ffn, x))
    assert alphas[0].shape == (2, 5, 1)
    assert alphas[0].std() > 1e-3, "with a random LayerNorm affine α must vary across tokens"


def test_dynamic_geglu_bf16_keeps_alpha_in_fp32() -> None:
    torch.manual_seed(0)
    ffn = DynamicGEGLU(DIM)
    randomize_(ffn)
    x = torch.randn(4, DIM)
    reference = ffn(x)
    alphas: list[torch.Tensor] = []
    ffn.to(torch.bfloat16).set_gate_observer(lambda _, n, t: alphas.append(t) if n == "alpha" else None)
    y = ffn(x.bfloat16())
    assert y.dtype == torch.bfloat16 and alphas[0].dtype == torch.float32
    torch.testing.assert_close(y.float(), reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


@pytest.mark.parametrize("dim", [64, 256])
def test_dynamic_geglu_alpha_is_constant_at_init(dim: int) -> None:
    torch.manual_seed(0)
    ffn = DynamicGEGLU(dim)
    seen: dict[str, torch.Tensor] = {}
    ffn.set_gate_observer(lambda _, n, t: seen.__setitem__(n, t))
    # Tokens of very different scale and offset: LayerNorm removes both.  (Scales ≥ 1 keep
    # the variance ≫ eps = 1e-5; ‖LayerNorm(x)‖ = √(dim·var/(var + eps)) is only ≈ √dim.)
    x = torch.randn(3, 7, dim) * torch.logspace(0, 2, 7)[:, None] + 10 * torch.randn(3, 7, 1)
    ffn(x)
    alpha = seen["alpha"]
    assert alpha.shape == (3, 7, 1)
    expected = torch.sigmoid(torch.tensor(0.1 * math.sqrt(dim)))
    torch.testing.assert_close(alpha, expected.expand_as(alpha), rtol=0, atol=1e-5)
    assert alpha.std() < 1e-6


def test_iso_gmlp_matches_definition() -> None:
    torch.manual_seed(0)
    ffn = IsoGMLP(DIM)
    randomize_(ffn)
    h = ffn.hidden_dim
    x = torch.randn(2, 5, DIM)
    u = ffn.up_proj.weight  # (2h, dim): first h rows make Z1, last h rows Z2
    z1, z2 = F.gelu(x @ u[:h].T), F.gelu(x @ u[h:].T)
    ln = (z2 - z2.mean(-1, keepdim=True)) / torch.sqrt(z2.var(-1, unbiased=False, keepdim=True) + ffn.norm.eps)
    expected = (z1 * (ln * ffn.norm.weight + ffn.norm.bias)) @ ffn.down_proj.weight.T
    torch.testing.assert_close(ffn(x), expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- gate recording

EXPECTED_RECORDS = {name: ["hidden"] if name in TWO_MATRIX else ["gate"] for name in NAMES}
EXPECTED_RECORDS["dynamic_geglu"] = ["gate", "alpha"]


@pytest.mark.parametrize("name", NAMES)
def test_record_names_and_observer_lifecycle(name: str) -> None:
    ffn = build(name)
    x = torch.randn(2, 3, DIM, requires_grad=True)
    assert ffn._gate_observer is None
    ffn(x)  # no observer: record is a no-op

    calls: list[tuple[nn.Module, str, torch.Tensor]] = []
    ffn.set_gate_observer(lambda module, n, t: calls.append((module, n, t)))
    ffn(x)
    assert [n for _, n, _ in calls] == EXPECTED_RECORDS[name]
    for module, n, t in calls:
        assert module is ffn
        assert not t.requires_grad, "observers get detached tensors"
        assert t.shape[:-1] == (2, 3)
        assert t.shape[-1] == (1 if n == "alpha" else ffn.hidden_dim)

    ffn.set_gate_observer(None)
    ffn(x)
    assert len(calls) == len(EXPECTED_RECORDS[name]), "observer called after removal"


def test_recorded_gate_values() -> None:
    swiglu, iso = SwiGLU(DIM), IsoGMLP(DIM)
    randomize_(iso)
    x = torch.randn(4, DIM)
    seen: dict[str, torch.Tensor] = {}
    for ffn in (swiglu, iso):
        ffn.set_gate_observer(lambda _, n, t: seen.__setitem__(n, t))
    swiglu(x)
    torch.testing.assert_close(seen["gate"], F.silu(swiglu.gate_proj(x)))
    iso(x)
    torch.testing.assert_close(seen["gate"], iso.norm(F.gelu(iso.up_proj(x))[..., iso.hidden_dim :]))


def test_gate_scalars() -> None:
    ffn = DynamicGEGLU(DIM, s_init=0.3, b_init=-0.2)
    scalars = ffn.gate_scalars()
    assert set(scalars) == {"s", "b"}
    assert scalars["s"] is ffn.s and scalars["b"] is ffn.b
    assert scalars["s"].item() == pytest.approx(0.3) and scalars["b"].item() == pytest.approx(-0.2)
    assert all(build(name).gate_scalars() == {} for name in NAMES if name != "dynamic_geglu")


# --------------------------------------------------------------------------- reset_parameters


@pytest.mark.parametrize("cls", [DynamicGEGLU, IsoGMLP])
def test_reset_parameters_restores_init(cls: type) -> None:
    ffn = cls(DIM)
    initial = {k: v.clone() for k, v in ffn.state_dict().items()}
    randomize_(ffn)
    linears = {k: v.clone() for k, v in ffn.state_dict().items() if "proj" in k}
    ffn.reset_parameters()
    for key, value in ffn.state_dict().items():
        expected = linears[key] if "proj" in key else initial[key]  # Linear weights: the decoder's job
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=f"{cls.__name__}.{key}")
    assert {k for k in initial if "proj" not in k} >= {"norm.weight", "norm.bias"}


def test_reset_parameters_materialises_from_meta() -> None:
    with torch.device("meta"):
        ffn = DynamicGEGLU(DIM, s_init=0.25, b_init=0.5)
    ffn.to_empty(device="cpu")
    ffn.reset_parameters()
    assert ffn.s.item() == 0.25 and ffn.b.item() == 0.5
    assert torch.equal(ffn.norm.weight, torch.ones(DIM)) and torch.equal(ffn.norm.bias, torch.zeros(DIM))


# --------------------------------------------------------------------------- configs

CONFIG_FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def test_every_builtin_has_a_config() -> None:
    assert sorted(p.stem for p in CONFIG_FILES) == NAMES


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_loads_and_instantiates(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), "first line: a one-line description"
    config = yaml.safe_load(text)
    assert list(config) == ["model"] and list(config["model"]) == ["ffn"], "must compose with any base config"
    spec = config["model"]["ffn"]
    assert set(spec) <= {"class_path", "init_args"}
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert BUILTIN_FFNS[path.stem] is cls
    init_args = spec.get("init_args", {})
    ffn = cls(DIM, **init_args)
    for key, value in init_args.items():
        assert getattr(ffn, key) == value
    if path.stem.endswith("_tanh"):
        assert init_args == {"approximate": "tanh"}
    assert ffn(torch.randn(3, DIM)).shape == (3, DIM)


@pytest.mark.parametrize("cls", sorted(set(BUILTIN_FFNS.values()), key=lambda c: c.__name__))
def test_init_signature_is_fully_typed(cls: type) -> None:
    """jsonargparse / LightningCLI build the config schema from these annotations."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    hints = typing.get_type_hints(cls.__init__)
    assert [p.name for p in params[:4]] == ["dim", "hidden_dim", "multiple_of", "bias"]
    for p in params:
        assert p.name in hints, f"{cls.__name__}.__init__({p.name}) is not annotated"
        assert p.kind is p.POSITIONAL_OR_KEYWORD
    doc = inspect.getdoc(cls) or ""
    assert "=" in doc and ("(20" in doc or "paper" in doc), "docstring must give the formula and its source"


def test_configs_parse_with_jsonargparse() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--ffn", type=Callable[[int], nn.Module])
    for path in CONFIG_FILES:
        spec = yaml.safe_load(path.read_text())["model"]["ffn"]
        factory = parser.instantiate_classes(parser.parse_object({"ffn": spec})).ffn
        ffn = factory(DIM)
        assert type(ffn) is BUILTIN_FFNS[path.stem]
        assert ffn(torch.randn(2, DIM)).shape == (2, DIM)


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize("cls", [GELUFFN, GEGLU, DynamicGEGLU])
def test_bad_approximate(cls: type) -> None:
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\), got 'fast'"):
        cls(DIM, approximate="fast")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hidden_dim", [0, -8])
def test_bad_hidden_dim(name: str, hidden_dim: int) -> None:
    with pytest.raises(ValueError, match=rf"hidden_dim must be a positive integer.*got {hidden_dim}"):
        build(name, hidden_dim=hidden_dim)


@pytest.mark.parametrize("name", NAMES)
def test_bad_dim(name: str) -> None:
    with pytest.raises(ValueError, match=r"dim must be a positive integer, got dim=0"):
        BUILTIN_FFNS[name](0)
