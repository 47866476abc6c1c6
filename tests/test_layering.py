"""Imports point down: every ``import lit_ffn.…`` in the package, at module level or inside a function
(a lazy import hides a cycle, it does not remove it), goes to a layer at or below its own.

The layers, bottom to top (a module may import its own layer and the ones below):

    0  errors, provenance, loss, loss_backends, flops, _lightning,       plain helpers
       parameter_names, seeds
    1  model                                                              the Decoder
    2  ffn, model_config                                                  the FFN zoo; a Decoder from a config
    3  data, distributed                                                  datasets; sharding, consolidation
    4  inference                                                          loading, generation, evaluation
    5  callbacks                                                          (the downstream eval uses inference)
    6  training                                                           the module, fit's CLI and checks
    7  bench, experiments                                                 tools built on training
    8  cli                                                                the ``lit_ffn`` command

The test parses the source (nothing is imported), so it sees imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lit_ffn"

LAYERS: dict[str, int] = {
    **dict.fromkeys(
        ["errors", "provenance", "loss", "loss_backends", "flops", "_lightning", "parameter_names", "seeds"], 0
    ),
    "model": 1,
    **dict.fromkeys(["ffn", "model_config"], 2),
    **dict.fromkeys(["data", "distributed"], 3),
    "inference": 4,
    "callbacks": 5,
    "training": 6,
    **dict.fromkeys(["bench", "experiments"], 7),
    "cli": 8,
}

#: Upward imports that are allowed, each with its reason: (importing module, imported unit).
EXCEPTIONS = {
    # the in-process launcher of `lit_ffn ablate` runs `lit_ffn fit` itself (tests, debugging): it calls the CLI
    ("lit_ffn.experiments.runner", "cli"),
}


def unit(module: str) -> str:
    """The layer unit of a dotted ``lit_ffn.…`` module name: its first component below ``lit_ffn``."""
    return module.split(".")[1]


def module_name(path: Path) -> str:
    """``lit_ffn/callbacks/gates.py`` → ``lit_ffn.callbacks.gates`` (a package: its ``__init__``'s name)."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """Every ``lit_ffn.…`` module that ``source`` (the text of ``module``) imports, with its line:
    at module level and inside functions; relative imports resolved."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            name = (node.module or "") if not node.level else f"{base}.{node.module}" if node.module else base
            if name == "lit_ffn":  # from lit_ffn import model
                found += [(f"lit_ffn.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append((name, node.lineno))
    return [(name, line) for name, line in found if name.startswith("lit_ffn.")]


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that go to a higher layer (less the listed exceptions)."""
    own = unit(module)
    return [
        f"{module}:{line} ({own}, layer {LAYERS[own]}) imports {name} (layer {LAYERS[unit(name)]})"
        for name, line in imports(source, module, is_package)
        if LAYERS[unit(name)] > LAYERS[own] and (module, unit(name)) not in EXCEPTIONS
    ]


def test_every_unit_has_a_layer() -> None:
    units = {unit(module_name(path)) for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py"}
    assert units - set(LAYERS) == set(), "give the new module or package a layer in LAYERS"


def test_imports_point_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "__init__.py":
            upward += upward_imports(path.read_text(), module_name(path), path.name == "__init__.py")
    assert upward == [], "imports that point up:\n" + "\n".join(upward)


def test_the_check_sees_lazy_and_relative_imports() -> None:
    """An import inside a function body counts (the cycle training → callbacks → inference → training
    hid in two such imports before lit_ffn.model_config and lit_ffn.parameter_names existed)."""
    lazy = "def f():\n    from lit_ffn.training.optim import lr_multiplier\n    return lr_multiplier\n"
    assert upward_imports(lazy, "lit_ffn.callbacks.downstream") == [
        "lit_ffn.callbacks.downstream:2 (callbacks, layer 5) imports lit_ffn.training.optim (layer 6)"
    ]
    assert upward_imports(lazy, "lit_ffn.experiments.runner") == []  # downward: allowed
    relative = "from ..training import config\n"
    assert [name for name, _ in imports(relative, "lit_ffn.inference.loading")] == ["lit_ffn.training"]
    assert len(upward_imports(relative, "lit_ffn.inference.loading")) == 1
    assert len(upward_imports("from lit_ffn import cli\n", "lit_ffn.training.module")) == 1
