"""One place for what an FFN variant *is*: names ↔ classes + init args, display names, factories.

A ``model.ffn`` *spec* is what jsonargparse parsed or a run's ``config.yaml`` saved:
``{"class_path": "lit_ffn.ffn.GEGLU", "init_args": {"approximate": "tanh"}}`` as a dict, a
jsonargparse ``Namespace`` or any object with those attributes.  Everything in lit_ffn that
names, builds or lists FFNs goes through this module:

* :data:`BUILTINS` — the built-in variants by the names of ``configs/ffn/<name>.yaml``
  (``lit_ffn params``, ``lit_ffn ablate --ffn NAME``, ``lit_ffn bench --ffn NAME``);
* :func:`variant_name` — ``GEGLU-approximate=tanh``: the run directory, HPARAMS ``ffn``, bench rows;
* :func:`factory` — a per-layer factory ``dim -> nn.Module`` from a spec (``lit_ffn params``, bench);
* :func:`resolve_variant` — ``--ffn`` entries (built-in name or YAML path) → ``(name, YAML path)``.

Nothing here imports training code: the registry sits next to the zoo it describes.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from lit_ffn.errors import UserError
from lit_ffn.ffn.dynamic_geglu import DynamicGEGLU
from lit_ffn.ffn.glu import GEGLU, GLU, Bilinear, ReGLU, SwiGLU
from lit_ffn.ffn.iso_gmlp import IsoGMLP
from lit_ffn.ffn.mlp import GELUFFN, ReLU2FFN, ReLUFFN, SiLUFFN
from lit_ffn.model import FFNFactory

#: The package the built-in class paths are written under (``lit_ffn.ffn.SwiGLU``).
PACKAGE = "lit_ffn.ffn"


@dataclass(frozen=True)
class Builtin:
    """A built-in variant: its class and the init arguments its ``configs/ffn/<name>.yaml`` sets."""

    cls: type[nn.Module]
    init_args: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def class_path(self) -> str:
        return f"{PACKAGE}.{self.cls.__name__}"

    def spec(self) -> dict[str, Any]:
        """The ``model.ffn`` section of this variant's YAML."""
        spec: dict[str, Any] = {"class_path": self.class_path}
        if self.init_args:
            spec["init_args"] = dict(self.init_args)
        return spec


#: Built-in variants by config name (``configs/ffn/<name>.yaml``; a test keeps the files equal to this).
BUILTINS: dict[str, Builtin] = {
    "relu": Builtin(ReLUFFN, {}, "ReLU FFN (Vaswani et al. 2017)"),
    "gelu": Builtin(GELUFFN, {"approximate": "none"}, "GELU FFN, exact erf GELU (Hendrycks & Gimpel 2016)"),
    "gelu_tanh": Builtin(GELUFFN, {"approximate": "tanh"}, "GELU FFN, tanh-approximate GELU"),
    "silu": Builtin(SiLUFFN, {}, "SiLU/Swish FFN (Ramachandran et al. 2017)"),
    "relu2": Builtin(ReLU2FFN, {}, "squared-ReLU FFN (So et al. 2021, Primer)"),
    "glu": Builtin(GLU, {}, "sigmoid-gated GLU FFN (Shazeer 2020, FFN_GLU)"),
    "bilinear": Builtin(Bilinear, {}, "bilinear GLU FFN, no activation (Shazeer 2020, FFN_Bilinear)"),
    "reglu": Builtin(ReGLU, {}, "ReLU-gated GLU FFN (Shazeer 2020, FFN_ReGLU)"),
    "geglu": Builtin(GEGLU, {"approximate": "none"}, "GELU-gated GLU FFN, exact GELU (Shazeer 2020, FFN_GEGLU)"),
    "geglu_tanh": Builtin(GEGLU, {"approximate": "tanh"}, "GELU-gated GLU FFN, tanh GELU as in Gemma"),
    "swiglu": Builtin(SwiGLU, {}, "Swish-gated GLU FFN, as in Llama/Qwen (Shazeer 2020, FFN_SwiGLU)"),
    "dynamic_geglu": Builtin(DynamicGEGLU, {"approximate": "none"}, "Dynamic GEGLU: token-wise gate scale alpha"),
    "iso_gmlp": Builtin(IsoGMLP, {}, "IsoGMLP: position-wise gMLP gating unit (lit_ffn's reading)"),
}

#: ``name -> class`` (the ``*_tanh`` names share the class of their exact-GELU sibling).
BUILTIN_FFNS: dict[str, type[nn.Module]] = {name: builtin.cls for name, builtin in BUILTINS.items()}


def builtin_class_paths() -> str:
    """``lit_ffn.ffn.ReLUFFN, lit_ffn.ffn.GELUFFN, …`` (each class once) for error messages."""
    return ", ".join(dict.fromkeys(builtin.class_path for builtin in BUILTINS.values()))


# ------------------------------------------------------------------ specs
def spec_parts(spec: Any) -> tuple[str | None, dict[str, Any]]:
    """``(class_path, init_args)`` of a spec given as a dict, a Namespace or an object with attributes."""
    get = spec.get if hasattr(spec, "get") else functools.partial(getattr, spec)
    try:
        class_path = get("class_path")
        init_args = get("init_args")
    except AttributeError:
        return None, {}
    if init_args is None:
        init_args = {}
    elif hasattr(init_args, "items"):
        init_args = dict(init_args.items())
    else:
        init_args = dict(vars(init_args))
    return (str(class_path) if class_path else None), init_args


def import_class(class_path: str) -> type:
    """The class at ``package.module.Class`` (UserError when it cannot be imported)."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise UserError(f"cannot import FFN class {class_path}: {err}") from None


def init_arg_names(class_path: str) -> list[str]:
    """The init arguments of an FFN class besides the width (``[]`` if it cannot be imported)."""
    try:
        cls = import_class(class_path)
    except UserError:  # the class itself is the problem; the caller says so
        return []
    return [p for p in inspect.signature(cls).parameters if p not in ("self", "dim")]


def variant_name(spec: Any) -> str:
    """``ClassName`` plus its init arguments that differ from their defaults, e.g. ``GEGLU`` or
    ``GEGLU-approximate=tanh`` (``"ffn"`` for a spec without a class path)."""
    class_path, init_args = spec_parts(spec)
    if not class_path:
        return "ffn"
    class_name = class_path.rpartition(".")[2]
    try:
        params = inspect.signature(import_class(class_path)).parameters
    except (UserError, TypeError, ValueError):  # the name is all we need; parsing already validated the class
        params = {}
    changed = [
        f"{key}={value}"
        for key, value in sorted(init_args.items())
        if key in params and params[key].default is not inspect.Parameter.empty and params[key].default != value
    ]
    return "-".join([class_name, *changed])


def factory_name(factory: Any) -> str:
    """A readable name for an FFN factory: its class name.

    Unwraps ``functools.partial`` — also jsonargparse's, which LightningCLI builds for
    ``class_path``/``init_args`` as ``partial(call, instantiator, cls, **init_args)``.
    """
    while isinstance(factory, functools.partial):
        classes = [arg for arg in factory.args if isinstance(arg, type)]
        if classes:
            return classes[0].__name__
        factory = factory.func
    return getattr(factory, "__name__", type(factory).__name__)


def factory(spec: Any) -> FFNFactory:
    """A per-layer factory (``dim -> nn.Module``) from a spec; a callable is returned as it is."""
    if callable(spec):
        return spec
    class_path, init_args = spec_parts(spec)
    if not class_path:
        raise UserError(f"model.ffn has no class_path: {spec!r}")
    return functools.partial(import_class(class_path), **init_args)


# ------------------------------------------------------------------ --ffn entries
#: Where ``configs/ffn/<name>.yaml`` is looked up after the working directory: the source checkout.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def builtin_config_text(name: str) -> str:
    """The YAML of built-in ``name`` (what ``configs/ffn/<name>.yaml`` holds, comment aside)."""
    builtin = BUILTINS[name]
    return f"# {builtin.description}\n" + yaml.safe_dump({"model": {"ffn": builtin.spec()}}, sort_keys=False)


def resolve_variant(spec: str, generated_dir: Path | None = None) -> tuple[str, Path]:
    """``(variant name, YAML path)`` for a ``--ffn`` entry: a built-in name or the path of any YAML
    holding a ``model.ffn`` section (named by its stem).

    A built-in is ``configs/ffn/<name>.yaml`` of the working directory or of the source checkout;
    an installed package without either writes the registry's YAML into ``generated_dir``.
    """
    path = Path(spec)
    if spec.endswith((".yaml", ".yml")) or path.parent != Path("."):
        if not path.is_file():
            raise UserError(f"FFN config {spec} does not exist")
        return path.stem, path
    if spec not in BUILTINS:
        raise UserError(
            f"unknown FFN '{spec}': use a built-in ({', '.join(BUILTINS)}) or the path of a YAML file "
            "with a model.ffn section"
        )
    for root in (Path.cwd(), SOURCE_ROOT):
        candidate = root / "configs" / "ffn" / f"{spec}.yaml"
        if candidate.is_file():
            return spec, candidate
    if generated_dir is None:
        raise UserError(f"configs/ffn/{spec}.yaml not found in {Path.cwd()} or {SOURCE_ROOT}: run from the checkout")
    generated_dir.mkdir(parents=True, exist_ok=True)
    target = generated_dir / f"{spec}.yaml"
    target.write_text(builtin_config_text(spec))
    return spec, target


def spec_for(entry: str) -> dict[str, Any]:
    """A ``model.ffn`` spec for a ``--ffn`` entry that may also be a class path: a built-in name,
    a YAML file with ``model.ffn``, or ``package.module.Class``."""
    key = entry.lower()
    if key in BUILTINS:
        return BUILTINS[key].spec()
    if entry.endswith((".yaml", ".yml")):
        try:
            data = yaml.safe_load(Path(entry).read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"--ffn {entry}: no such file") from None
        except yaml.YAMLError as err:
            raise UserError(f"--ffn {entry}: not valid YAML ({' '.join(str(err).split())})") from None
        ffn = data.get("model", {}).get("ffn") if isinstance(data, dict) else None
        if ffn is None:
            raise UserError(f"--ffn {entry}: the file has no model.ffn")
        return ffn
    if "." in entry:
        return {"class_path": entry}
    raise UserError(
        f"--ffn {entry!r}: not a built-in FFN ({', '.join(sorted(BUILTINS))}), a YAML file or a class import path"
    )


__all__ = [
    "BUILTINS",
    "BUILTIN_FFNS",
    "Builtin",
    "builtin_class_paths",
    "builtin_config_text",
    "factory",
    "factory_name",
    "import_class",
    "init_arg_names",
    "resolve_variant",
    "spec_for",
    "spec_parts",
    "variant_name",
]
