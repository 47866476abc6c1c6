"""``lit_ffn export --format hf`` onto stock Qwen3: transformers reproduces lit_ffn's logits and token ids; atomicity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lit_ffn.cli import main  # noqa: E402
from lit_ffn.data.tokenizer import load_tokenizer  # noqa: E402
from lit_ffn.distributed.consolidate import consolidate  # noqa: E402
from lit_ffn.errors import UserError  # noqa: E402
from lit_ffn.ffn import GEGLU, GLU, Bilinear, DynamicGEGLU, IsoGMLP, ReGLU, ReLU2FFN, ReLUFFN, SiLUFFN, SwiGLU  # noqa: E402
from lit_ffn.ffn.mlp import GELUFFN  # noqa: E402
from lit_ffn.inference import export as export_module  # noqa: E402
from lit_ffn.inference.export import export_hf, hidden_act  # noqa: E402
from lit_ffn.inference.hf_tokenizer import write_tokenizer_files  # noqa: E402
from lit_ffn.inference.loading import load_model  # noqa: E402
from tests.inference.conftest import MEMORIZED, model_section, one_line_error, write_run  # noqa: E402
from tests.inference.user_ffn import DoubledSwiGLU, ScaledTanhMLP  # noqa: E402
from tests.scaleout_helpers import scaleout_runs  # noqa: E402, F401 - fixture

#: every GLU-family variant transformers' ACT2FN can express, and the hidden_act it must get
EXPORTABLE = {
    "swiglu": ({"class_path": "lit_ffn.ffn.SwiGLU"}, "silu"),
    "geglu": ({"class_path": "lit_ffn.ffn.GEGLU", "init_args": {"approximate": "none"}}, "gelu"),
    "geglu_tanh": ({"class_path": "lit_ffn.ffn.GEGLU", "init_args": {"approximate": "tanh"}}, "gelu_pytorch_tanh"),
    "reglu": ({"class_path": "lit_ffn.ffn.ReGLU"}, "relu"),
    "glu": ({"class_path": "lit_ffn.ffn.GLU"}, "sigmoid"),
    "bilinear": ({"class_path": "lit_ffn.ffn.Bilinear"}, "linear"),
}
#: the bound of tests/test_model_parity.py
TOLERANCE = 1e-4


def hf_logits(export_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
    assert type(model).__name__ == "Qwen3ForCausalLM"
    with torch.no_grad():
        return model(tokens).logits


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("name", list(EXPORTABLE))
def test_transformers_reproduces_the_logits_of_every_exportable_ffn(
    name: str, tie: bool, tmp_path: Path, tiny_dataset: Path
) -> None:
    spec, act = EXPORTABLE[name]
    run = tmp_path / "run"
    write_run(run, model_section(spec, tie_embeddings=tie), tiny_dataset, seed=list(EXPORTABLE).index(name))
    loaded = load_model(run)
    out = tmp_path / "exported"
    record = export_hf(loaded, out, verify=False)
    config = json.loads((out / "config.json").read_text())
    assert record["hidden_act"] == config["hidden_act"] == act and config["tie_word_embeddings"] is tie
    tokens = torch.randint(0, 384, (2, 29), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = loaded.decoder.logits(loaded.decoder(tokens))
    got = hf_logits(out, tokens)
    assert expected.abs().max() > 1  # weights of size 0.3: the logits are far from uniform
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_the_export_verifies_itself_and_its_tokenizer_gives_lit_ffns_ids(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "hf"
    capsys.readouterr()
    assert main(["export", "--ckpt", str(tiny_run), "--out", str(out)]) == 0
    assert "Qwen3ForCausalLM, hidden_act=silu" in capsys.readouterr().out
    record = json.loads((out / "lit_ffn_export.json").read_text())
    assert record["verified"]["checked"] and record["verified"]["max_abs_logit_diff"] <= TOLERANCE
    assert record["global_step"] == 4 and record["ffn"] == "SwiGLU"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "lit_ffn_export.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    loaded = load_model(tiny_run)
    auto = transformers.AutoTokenizer.from_pretrained(out)
    for text in (MEMORIZED, "The list type\n\n  def f(x):\treturn x ** 2  # ünïcode"):
        assert auto(text)["input_ids"] == loaded.tokenizer.encode(text)
        assert auto.decode(loaded.tokenizer.encode(text)) == text
    assert auto.eos_token_id == loaded.tokenizer.eos_id


def test_the_qwen3_tokenizer_is_written_as_an_equal_tokenizer_json(tmp_path: Path) -> None:
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer

    qwen = load_tokenizer("qwen3")
    write_tokenizer_files(qwen, tmp_path, model_max_length=256)
    written = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    texts = [topics[key] for key in sorted(topics)]  # ~0.46 MB of English, code and reST
    texts += ["Hello world", "naïve café ﬁ Å 日本語 🤖 \r\n\n  x", "   leading", "it's I'LL we'd 12345 $1,000.00"]
    for text in texts:
        assert written.encode(text, add_special_tokens=False).ids == qwen.encode(text), text[:60]
    assert written.encode("Hello world").ids == [9707, 1879]
    assert written.token_to_id("<|endoftext|>") == qwen.eos_id == 151_643
    assert written.get_vocab_size() == qwen.vocab_size == 151_669
    # AutoTokenizer reads such a tokenizer.json with this tokenizer_config.json as it is: see the test above
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"


@pytest.mark.parametrize(
    "ffn",
    [ReLUFFN(8), GELUFFN(8), SiLUFFN(8), ReLU2FFN(8), DynamicGEGLU(8), IsoGMLP(8), ScaledTanhMLP(8), DoubledSwiGLU(8)],
    ids=lambda ffn: type(ffn).__name__,
)
def test_ffns_the_stock_model_cannot_express_get_no_hidden_act(ffn: torch.nn.Module) -> None:
    """These export as remote code instead (tests/inference/test_export_remote_code.py)."""
    assert export_module.stock_hidden_act(ffn) is None
    with pytest.raises(
        UserError, match=r"cannot export FFN .*covers SwiGLU, GEGLU \(exact or tanh\), ReGLU, GLU and Bilinear"
    ):
        hidden_act(ffn)


def test_biases_and_the_exportable_classes() -> None:
    with pytest.raises(UserError, match="bias=True: Qwen3MLP has no biases"):
        hidden_act(SwiGLU(8, bias=True))
    assert [
        hidden_act(f) for f in (SwiGLU(8), GEGLU(8), GEGLU(8, approximate="tanh"), ReGLU(8), GLU(8), Bilinear(8))
    ] == [
        "silu",
        "gelu",
        "gelu_pytorch_tanh",
        "relu",
        "sigmoid",
        "linear",
    ]
    from transformers.activations import ACT2CLS

    assert set(export_module.HIDDEN_ACT_NAMES) <= set(ACT2CLS)


def test_out_is_refused_or_replaced_atomically(tmp_path: Path, tiny_dataset: Path, capsys, monkeypatch) -> None:
    reglu = tmp_path / "reglu"
    write_run(reglu, model_section({"class_path": "lit_ffn.ffn.ReGLU"}), tiny_dataset)
    relu = tmp_path / "relu"
    write_run(relu, model_section({"class_path": "lit_ffn.ffn.ReLUFFN"}), tiny_dataset)
    out = tmp_path / "exports" / "model"
    assert main(["export", "--ckpt", str(relu), "--out", str(out), "--no-verify"]) == 0  # with remote code
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "modeling_lit_ffn.py" in before
    line = one_line_error(capsys, ["export", "--ckpt", str(reglu), "--out", str(out)], "export")
    assert line.endswith("already exists: choose another --out, delete it, or pass --overwrite")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "write_tokenizer_files", broken)
    with pytest.raises(OSError, match="disk full"):
        export_hf(load_model(reglu), out, overwrite=True, verify=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old export, untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no partial directory left
    monkeypatch.undo()

    assert main(["export", "--ckpt", str(reglu), "--out", str(out), "--overwrite", "--no-verify"]) == 0
    assert json.loads((out / "config.json").read_text())["hidden_act"] == "relu"
    assert not list(out.glob("*.py"))  # a stock export replacing a remote-code one: no stale code left
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]


@pytest.mark.scaleout
def test_a_sharded_checkpoint_exports_the_files_of_its_consolidated_form(scaleout_runs, tmp_path: Path) -> None:  # noqa: F811
    run = scaleout_runs("fsdp2").reference
    sharded = run / "checkpoints" / "last.ckpt"
    assert sharded.resolve().is_dir()
    copy = tmp_path / "run"  # the same run layout, holding the consolidated file
    (copy / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "config.yaml", copy / "config.yaml")
    consolidate(sharded, copy / "checkpoints" / "last.ckpt")
    a, b = tmp_path / "from_sharded", tmp_path / "from_consolidated"
    assert main(["export", "--ckpt", str(run), "--out", str(a)]) == 0
    assert main(["export", "--ckpt", str(copy), "--out", str(b)]) == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name == "lit_ffn_export.json":  # the same record, but for the source path
            ra, rb = (json.loads((d / name).read_text()) for d in (a, b))
            assert ra.pop("source") != rb.pop("source") and ra == rb
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
