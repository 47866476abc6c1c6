"""The FFN registry: one place for names ↔ classes, display names and factories."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from lit_ffn.errors import UserError
from lit_ffn.ffn import GEGLU, SwiGLU
from lit_ffn.ffn.registry import (
    BUILTINS,
    factory,
    factory_name,
    init_arg_names,
    resolve_variant,
    spec_for,
    spec_parts,
    variant_name,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "ffn"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_each_shipped_ffn_yaml_is_the_registry_entry(name: str) -> None:
    """configs/ffn/<name>.yaml and the registry cannot drift apart."""
    shipped = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())["model"]["ffn"]
    assert shipped == BUILTINS[name].spec()


def test_every_shipped_ffn_yaml_is_registered() -> None:
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(BUILTINS)


def test_variant_names_from_every_spec_shape() -> None:
    class Attrs:
        def __init__(self) -> None:
            self.class_path, self.init_args = "lit_ffn.ffn.GEGLU", {"approximate": "tanh"}

    assert variant_name({"class_path": "lit_ffn.ffn.GEGLU"}) == "GEGLU"
    assert variant_name({"class_path": "lit_ffn.ffn.GEGLU", "init_args": {"approximate": "none"}}) == "GEGLU"
    assert variant_name(BUILTINS["geglu_tanh"].spec()) == "GEGLU-approximate=tanh"
    assert variant_name(Attrs()) == "GEGLU-approximate=tanh"
    assert variant_name({"class_path": "not.a.Module", "init_args": {"x": 1}}) == "Module"  # named, not imported
    assert variant_name({}) == "ffn"


def test_factory_builds_the_class_with_its_init_args() -> None:
    ffn = factory(BUILTINS["geglu_tanh"].spec())(32)
    assert isinstance(ffn, GEGLU) and ffn.approximate == "tanh"
    assert factory(SwiGLU) is SwiGLU  # a callable is already a factory
    with pytest.raises(UserError, match="cannot import FFN class nope.Nope"):
        factory({"class_path": "nope.Nope"})


def test_factory_name_unwraps_partials() -> None:
    assert factory_name(SwiGLU) == "SwiGLU"
    assert factory_name(functools.partial(GEGLU, approximate="tanh")) == "GEGLU"
    assert factory_name(functools.partial(functools.partial(lambda *a, **k: None), GEGLU)) == "GEGLU"


def test_spec_parts_and_init_arg_names() -> None:
    assert spec_parts({"class_path": "a.B", "init_args": None}) == ("a.B", {})
    assert "approximate" in init_arg_names("lit_ffn.ffn.GEGLU") and "dim" not in init_arg_names("lit_ffn.ffn.GEGLU")
    assert init_arg_names("nope.Nope") == []


def test_resolve_variant_from_a_checkout_and_from_an_installed_package(tmp_path: Path, monkeypatch) -> None:
    name, path = resolve_variant("geglu_tanh")
    assert name == "geglu_tanh" and path.read_text() == (CONFIG_DIR / "geglu_tanh.yaml").read_text()
    # an installed package: no configs/ffn in the working directory nor next to the package
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lit_ffn.ffn.registry.SOURCE_ROOT", tmp_path / "site-packages")
    with pytest.raises(UserError, match="configs/ffn/geglu_tanh.yaml not found"):
        resolve_variant("geglu_tanh")
    name, path = resolve_variant("geglu_tanh", generated_dir=tmp_path / "gen")
    assert path == tmp_path / "gen" / "geglu_tanh.yaml"
    assert yaml.safe_load(path.read_text()) == {"model": {"ffn": BUILTINS["geglu_tanh"].spec()}}


def test_bad_variant_entries_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown FFN 'swiglo'"):
        resolve_variant("swiglo")
    with pytest.raises(UserError, match="does not exist"):
        resolve_variant(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="not a built-in FFN"):
        spec_for("swiglo")
    (tmp_path / "empty.yaml").write_text("model: {}\n")
    with pytest.raises(UserError, match="has no model.ffn"):
        spec_for(str(tmp_path / "empty.yaml"))
    assert spec_for("SwiGLU") == {"class_path": "lit_ffn.ffn.SwiGLU"}
    assert spec_for("my_pkg.MyFFN") == {"class_path": "my_pkg.MyFFN"}
