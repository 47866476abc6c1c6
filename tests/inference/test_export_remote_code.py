"""``lit_ffn export`` for every FFN: stock Qwen3 where it can hold the FFN, remote code otherwise.

Every test is offline on width-32 models; transformers copies remote code into the temporary
``HF_MODULES_CACHE`` that ``tests/conftest.py`` sets before transformers is imported.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lit_ffn.cli import main  # noqa: E402
from lit_ffn.errors import UserError  # noqa: E402
from lit_ffn.ffn import SwiGLU  # noqa: E402
from lit_ffn.ffn.registry import BUILTINS  # noqa: E402
from lit_ffn.inference.export import export_hf  # noqa: E402
from lit_ffn.inference.generate import generate  # noqa: E402
from lit_ffn.inference.loading import LoadedModel, load_model  # noqa: E402
from lit_ffn.inference.remote_code import SourceBundle  # noqa: E402
from lit_ffn.model import Decoder  # noqa: E402
from tests.conftest import HF_MODULES_CACHE  # noqa: E402
from tests.inference.conftest import TINY_MODEL, model_section, one_line_error, write_run  # noqa: E402

#: the built-ins a stock Qwen3MLP computes (through hidden_act); every other one needs remote code
STOCK = {"swiglu", "geglu", "geglu_tanh", "reglu", "glu", "bilinear"}
REMOTE = [name for name in BUILTINS if name not in STOCK]
TOLERANCE = 1e-4
PROBE = torch.randint(0, 384, (2, 29), generator=torch.Generator().manual_seed(7))


def load_hf(export_dir: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(
        export_dir, trust_remote_code=True, dtype=torch.float32
    ).eval()


def lit_ffn_logits(loaded: LoadedModel, tokens: torch.Tensor = PROBE) -> torch.Tensor:
    with torch.no_grad():
        return loaded.decoder.logits(loaded.decoder(tokens))


def export_run(tmp_path: Path, data: Path, ffn: dict, tie: bool = True, seed: int = 0, **kwargs) -> tuple:
    run = tmp_path / "run"
    write_run(run, model_section(ffn, tie_embeddings=tie), data, seed=seed)
    loaded = load_model(run)
    out = tmp_path / "exported"
    record = export_hf(loaded, out, **kwargs)
    return loaded, out, record


def test_tests_cache_remote_code_in_a_temporary_directory() -> None:
    from transformers import dynamic_module_utils

    assert dynamic_module_utils.HF_MODULES_CACHE == HF_MODULES_CACHE
    assert not Path(HF_MODULES_CACHE).resolve().is_relative_to(Path.home().resolve())


@pytest.mark.parametrize(
    ("name", "tie"),
    # every export is a directory called "exported": one process loads remote code of different FFNs from
    # directories of the same name, which must not share a config class (remote_code.configuration_source)
    [(name, True) for name in BUILTINS] + [(name, False) for name in ("relu2", "dynamic_geglu", "iso_gmlp")],
    ids=lambda value: {True: "tied", False: "untied"}.get(value, value) if isinstance(value, bool) else value,
)
def test_transformers_reproduces_the_logits_of_every_builtin_ffn(
    name: str, tie: bool, tmp_path: Path, tiny_dataset: Path
) -> None:
    loaded, out, record = export_run(
        tmp_path, tiny_dataset, BUILTINS[name].spec(), tie=tie, seed=list(BUILTINS).index(name), verify=False
    )
    config = json.loads((out / "config.json").read_text())
    python_files = sorted(p.name for p in out.glob("*.py"))
    if name in STOCK:  # no remote code where none is needed
        assert config["architectures"] == ["Qwen3ForCausalLM"] and "auto_map" not in config and not python_files
    else:
        assert config["model_type"] == "lit_ffn_qwen3" and record["architecture"] == "LitFFNQwen3ForCausalLM"
        assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_lit_ffn.LitFFNQwen3ForCausalLM"
        assert {"configuration_lit_ffn.py", "modeling_lit_ffn.py"} <= set(python_files)
        assert python_files == sorted(record["remote_code"]["files"])
        assert config["ffn_init_args"] == dict(BUILTINS[name].init_args)
    assert config["tie_word_embeddings"] is tie
    model = load_hf(out)
    assert type(model).__name__ == config["architectures"][0]
    mlp = model.model.layers[0].mlp
    assert type(mlp).__name__ == ("Qwen3MLP" if name in STOCK else BUILTINS[name].cls.__name__)
    expected = lit_ffn_logits(loaded)
    with torch.no_grad():
        got = model(PROBE).logits
    assert expected.abs().max() > 1  # weights of size 0.3: the logits are far from uniform
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_a_remote_code_export_needs_trust_remote_code(tmp_path: Path, tiny_dataset: Path) -> None:
    _, out, _ = export_run(tmp_path, tiny_dataset, BUILTINS["relu"].spec(), verify=False)
    with pytest.raises(ValueError, match="trust_remote_code"):  # never silently a stock Qwen3 with a wrong MLP
        transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)


@pytest.mark.parametrize("name", ["dynamic_geglu", "iso_gmlp"])
def test_the_cli_export_verifies_itself_and_transformers_generates_lit_ffns_greedy_tokens(
    name: str, tmp_path: Path, tiny_dataset: Path, capsys
) -> None:
    run = tmp_path / "run"
    write_run(run, model_section(BUILTINS[name].spec()), tiny_dataset, seed=3)
    out = tmp_path / "hf"
    capsys.readouterr()
    assert main(["export", "--ckpt", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LitFFNQwen3ForCausalLM with remote code for lit_ffn.ffn." in printed
    assert f"from_pretrained({str(out)!r}, trust_remote_code=True)" in printed
    record = json.loads((out / "lit_ffn_export.json").read_text())
    assert record["verified"]["checked"] and record["verified"]["trust_remote_code"]
    assert record["verified"]["max_abs_logit_diff"] <= TOLERANCE
    # the verification's copy in the modules cache is keyed by the final name, not the staging one
    cached = {p.name for p in (Path(HF_MODULES_CACHE) / "transformers_modules").iterdir()}
    assert "hf" in cached and not any("partial" in name for name in cached)

    loaded = load_model(run)
    prompt = PROBE[:1, :5]
    steps = 8
    expected = generate(loaded.decoder, prompt, steps, eos_id=loaded.tokenizer.eos_id)[0]
    model = load_hf(out)
    with torch.no_grad():
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=steps, do_sample=False)
    got = output[0, prompt.shape[1] :].tolist()
    if loaded.tokenizer.eos_id in got:  # lit_ffn's generate stops before EOS, transformers includes it
        got = got[: got.index(loaded.tokenizer.eos_id)]
    assert len(expected) >= 4 and got == expected


@pytest.mark.parametrize(
    ("class_path", "init_args"),
    [
        ("tests.inference.user_ffn.ScaledTanhMLP", {"hidden_mult": 3, "scale": 0.5}),
        ("tests.inference.user_ffn.DoubledSwiGLU", {}),  # a subclass of a built-in: lit_ffn's glu.py is shipped too
        ("lit_ffn.ffn.SwiGLU", {"bias": True}),  # Qwen3MLP has no biases
    ],
    ids=["user_class", "user_subclass", "swiglu_bias"],
)
def test_user_classes_and_biases_are_exported_as_remote_code(
    class_path: str, init_args: dict, tmp_path: Path, tiny_dataset: Path
) -> None:
    loaded, out, record = export_run(tmp_path, tiny_dataset, {"class_path": class_path, "init_args": init_args})
    assert record["verified"]["checked"] and record["verified"]["trust_remote_code"]
    config = json.loads((out / "config.json").read_text())
    assert config["ffn_class_path"] == class_path and config["ffn_init_args"] == init_args
    for path in out.glob("*.py"):  # every import is relative or of the standard library, torch, transformers
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                assert node.module.split(".")[0] in {"__future__", "typing", "collections", "torch", "transformers"}
            elif isinstance(node, ast.Import):
                assert {alias.name.split(".")[0] for alias in node.names} <= {"torch", "math"}, path.name
    with torch.no_grad():
        got = load_hf(out)(PROBE).logits
    assert (got - lit_ffn_logits(loaded)).abs().max().item() <= TOLERANCE


def test_the_export_loads_where_lit_ffn_cannot_be_imported(tmp_path: Path, tiny_dataset: Path) -> None:
    exports = {}
    for name, spec in [
        ("dynamic_geglu", BUILTINS["dynamic_geglu"].spec()),
        ("user_subclass", {"class_path": "tests.inference.user_ffn.DoubledSwiGLU"}),
    ]:
        loaded, out, _ = export_run(tmp_path / name, tiny_dataset, spec, tie=False, verify=False)
        exports[name] = (out, lit_ffn_logits(loaded))
    shadow = tmp_path / "shadow" / "lit_ffn"  # first on the path: `import lit_ffn` fails
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('lit_ffn is not installed here')\n")
    script = tmp_path / "work" / "load.py"
    script.parent.mkdir()
    script.write_text(
        textwrap.dedent(
            """\
            import sys

            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                import lit_ffn  # noqa: F401
            except ImportError:
                pass
            else:
                sys.exit("lit_ffn was importable")
            tokens = torch.load(sys.argv[1])
            logits = {}
            for export in sys.argv[2:]:
                model = AutoModelForCausalLM.from_pretrained(export, trust_remote_code=True, dtype=torch.float32)
                with torch.no_grad():
                    logits[export] = model(tokens).logits
                assert AutoTokenizer.from_pretrained(export)("a list")["input_ids"]
            assert not [name for name in sys.modules if name.split(".")[0] == "lit_ffn"]
            torch.save(logits, sys.argv[1] + ".out")
            """
        )
    )
    tokens = tmp_path / "tokens.pt"
    torch.save(PROBE, tokens)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_", "TRANSFORMERS"))}
    env.update(
        PYTHONPATH=str(shadow.parent),
        HF_HOME=str(tmp_path / "hf_home"),
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    paths = [str(out) for out, _ in exports.values()]
    result = subprocess.run(
        [sys.executable, str(script), str(tokens), *paths],
        check=False,
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = torch.load(f"{tokens}.out")
    for path, (_, expected) in zip(paths, exports.values(), strict=True):
        assert (got[path] - expected).abs().max().item() <= TOLERANCE


# ------------------------------------------------------------------ refusals
class MainFFN(SwiGLU):
    """Stands for a class a script or notebook defines: Python gives it the module ``__main__``."""


MainFFN.__module__ = "__main__"


def local_class() -> type:
    class LocalFFN(SwiGLU):
        pass

    return LocalFFN


LocalFFN = local_class()


def tiny_loaded(factory, tokenizer) -> LoadedModel:
    decoder = Decoder(factory, **TINY_MODEL).eval()
    return LoadedModel(decoder, tokenizer, Path("memory"), None, {"ffn": {}}, 32, 0)


@pytest.mark.parametrize(
    ("factory", "reason"),
    [
        (MainFFN, r"it is defined in __main__ \(a script or notebook\), whose source cannot be shipped"),
        (LocalFFN, r"it is defined inside a function \(a local class\)"),
        (lambda dim: LocalFFN(dim), r"it is defined inside a function \(a local class\)"),  # noqa: PLW0108
    ],
    ids=["main", "local_class", "lambda_of_a_local_class"],
)
def test_unshippable_ffns_are_refused_in_one_line_and_nothing_is_written(
    factory, reason: str, tmp_path: Path, tiny_dataset: Path
) -> None:
    good, out, _ = export_run(tmp_path, tiny_dataset, BUILTINS["relu"].spec(), verify=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    loaded = tiny_loaded(factory, good.tokenizer)
    for target in (out, tmp_path / "new"):
        with pytest.raises(UserError, match=f"^cannot export FFN .*FFN: {reason}") as err:
            export_hf(loaded, target, overwrite=True)
        assert "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old export untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "run"]  # nothing new, no staging left


def test_ffns_that_depend_on_unshippable_code_are_refused(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "yaml_ffn.py").write_text(
        "import yaml\nfrom torch import nn\n\n\nclass YamlFFN(nn.Identity):\n    pass\n", encoding="utf-8"
    )
    (tmp_path / "star_ffn.py").write_text(
        "from torch import nn\nfrom lit_ffn.ffn.glu import *\n\n\nclass StarFFN(nn.Identity):\n    pass\n"
    )
    (tmp_path / "module_ffn.py").write_text(
        "from torch import nn\nimport lit_ffn.ffn.glu\n\n\nclass ModuleFFN(lit_ffn.ffn.glu.SwiGLU):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import module_ffn
    import star_ffn
    import yaml_ffn

    with pytest.raises(UserError, match=r"^cannot export FFN yaml_ffn.YamlFFN: yaml_ffn imports yaml \(the remote"):
        SourceBundle.for_object(yaml_ffn.YamlFFN)
    with pytest.raises(UserError, match=r"has `from lit_ffn.ffn.glu import \*`; import the names it uses$"):
        SourceBundle.for_object(star_ffn.StarFFN)
    with pytest.raises(UserError, match=r"imports lit_ffn.ffn.glu with `import …`; write `from lit_ffn.ffn.glu"):
        SourceBundle.for_object(module_ffn.ModuleFFN)
    # lit_ffn code that needs more than torch: the registry imports yaml and lit_ffn.model
    with pytest.raises(UserError, match=r"lit_ffn.ffn.registry imports yaml"):
        from lit_ffn.ffn.registry import factory

        SourceBundle.for_object(factory)


def test_the_cli_refuses_a_user_class_with_an_unshippable_import_in_one_line(
    tmp_path: Path, tiny_dataset: Path, capsys, monkeypatch
) -> None:
    (tmp_path / "yaml_identity.py").write_text(
        "import yaml  # noqa: F401\nfrom torch import nn\n\n\nclass Identity(nn.Identity):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    write_run(run, model_section({"class_path": "yaml_identity.Identity"}), tiny_dataset)
    out = tmp_path / "exports" / "model"
    line = one_line_error(capsys, ["export", "--ckpt", str(run), "--out", str(out)], "export")
    assert line.endswith(
        "cannot export FFN yaml_identity.Identity: yaml_identity imports yaml (the remote code of an export may "
        "import only torch, transformers and the standard library)"
    )
    assert not out.parent.exists()  # nothing written


def test_a_bundle_holds_the_defining_modules_with_relative_imports() -> None:
    from lit_ffn.ffn import DynamicGEGLU

    bundle = SourceBundle.for_object(DynamicGEGLU)
    assert bundle.entry == ("lit_ffn_ffn_dynamic_geglu", "DynamicGEGLU")
    assert sorted(bundle.files) == ["lit_ffn_ffn_base", "lit_ffn_ffn_dynamic_geglu", "lit_ffn_ffn_glu"]
    source = bundle.files["lit_ffn_ffn_dynamic_geglu"]
    assert "from .lit_ffn_ffn_base import DEFAULT_MULTIPLE_OF, Approximate, check_approximate\n" in source
    assert "from .lit_ffn_ffn_glu import GatedFFN\n" in source
    original = Path(sys.modules["lit_ffn.ffn.dynamic_geglu"].__file__).read_text()
    assert source.split("class DynamicGEGLU", 1)[1] == original.split("class DynamicGEGLU", 1)[1]  # verbatim
    assert (
        SourceBundle.for_object(torch.nn.Identity).import_line("F")
        == "from torch.nn.modules.linear import Identity as F"
    )
