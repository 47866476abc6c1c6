"""KV-cached decoding equals uncached decoding for every FFN; sampling rules; ``lit_ffn generate``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_ffn.cli import main
from lit_ffn.errors import UserError
from lit_ffn.ffn.registry import BUILTINS, factory
from lit_ffn.inference.generate import generate
from lit_ffn.inference.loading import load_model
from lit_ffn.inference.sampling import Sampling, filter_logits, next_token
from lit_ffn.model import Decoder, KVCache
from tests.inference.conftest import MEMORIZED, STEPS, TINY_MODEL, Memorized, one_line_error, perturbed_

USER_FFN = {"class_path": "tests.inference.user_ffn.ScaledTanhMLP", "init_args": {"scale": 1.5}}
FFN_SPECS = {**{name: builtin.spec() for name, builtin in BUILTINS.items()}, "user": USER_FFN}


def tiny_decoder(spec: dict, seed: int = 0) -> Decoder:
    decoder = Decoder(factory(spec), **TINY_MODEL)
    perturbed_(decoder, seed)
    return decoder.eval()


# ------------------------------------------------------------------ the cache
@pytest.mark.parametrize("name", list(FFN_SPECS))
def test_cached_decoding_gives_the_tokens_of_uncached_decoding(name: str) -> None:
    decoder = tiny_decoder(FFN_SPECS[name])
    prompt = torch.randint(0, TINY_MODEL["vocab_size"], (2, 5), generator=torch.Generator().manual_seed(1))
    for sampling in (Sampling(), Sampling(temperature=1.0, top_k=20)):
        runs = [
            generate(decoder, prompt, 12, sampling, generator=torch.Generator().manual_seed(3), use_cache=cached)
            for cached in (True, False)
        ]
        assert runs[0] == runs[1]
        assert [len(row) for row in runs[0]] == [12, 12]


def test_cached_forward_equals_the_full_forward_in_any_chunking() -> None:
    decoder = tiny_decoder(BUILTINS["swiglu"].spec())
    tokens = torch.randint(0, TINY_MODEL["vocab_size"], (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = decoder(tokens)
        cache = KVCache.for_decoder(decoder, batch=2, max_len=20)
        # a prefill, a chunk of 5 after it (explicit offset causal mask), then one token at a time
        pieces = [decoder(tokens[:, :7], cache=cache), decoder(tokens[:, 7:12], cache=cache)]
        pieces += [decoder(tokens[:, t : t + 1], cache=cache) for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    assert cache.length == 20
    with pytest.raises(ValueError, match="KV cache holds 20 positions"):
        decoder(tokens[:, :1], cache=cache)


def test_generation_stops_at_eos_and_at_the_stop_rule() -> None:
    decoder = tiny_decoder(BUILTINS["swiglu"].spec())
    prompt = torch.tensor([[1, 2, 3]])
    (free,) = generate(decoder, prompt, 6)
    (cut,) = generate(decoder, prompt, 6, eos_id=free[2])  # the third token is "EOS": two tokens come out
    assert cut == free[:2]
    (stopped,) = generate(decoder, prompt, 6, stop=lambda row, tokens: len(tokens) == 4)
    assert stopped == free[:4]


# ------------------------------------------------------------------ sampling
def test_top_k_and_top_p_keep_the_documented_tokens() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda sampling: torch.isfinite(filter_logits(logits, sampling))[0].tolist()  # noqa: E731
    assert kept(Sampling(1.0, top_k=2)) == [True, True, False, False]
    assert kept(Sampling(1.0, top_p=0.5)) == [True, False, False, False]  # 0.5 reached by the first token
    assert kept(Sampling(1.0, top_p=0.79)) == [True, True, False, False]
    assert kept(Sampling(1.0, top_p=0.81)) == [True, True, True, False]
    assert next_token(logits, Sampling()).tolist() == [0]
    draws = [next_token(logits, Sampling(1.0, top_k=2), torch.Generator().manual_seed(s)).item() for s in range(40)]
    assert set(draws) == {0, 1}  # both kept tokens are drawn, never the others


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "--temperature"),
        ({"temperature": 1.0, "top_k": 0}, "--top-k"),
        ({"top_p": 1.5}, "--top-p"),
    ],
)
def test_bad_sampling_settings_are_user_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        Sampling(**kwargs)


# ------------------------------------------------------------------ a trained model
def test_greedy_decoding_reproduces_the_memorized_text(memorized: Memorized, capsys: pytest.CaptureFixture) -> None:
    assert memorized.final_loss < 0.1
    prefix = MEMORIZED[: MEMORIZED.index(" mutable")]  # "A list is a"
    loaded = load_model(memorized.run_dir)  # the run directory: its config.yaml names the dataset's tokenizer
    eos = loaded.tokenizer.eos_id
    prompt = loaded.tokenizer.encode(prefix)
    (new,) = generate(loaded.decoder, torch.tensor([[eos, *prompt]]), 80, eos_id=eos)
    assert prompt + new == memorized.ids  # the whole text, then EOS (not included)

    capsys.readouterr()
    assert main(["generate", "--ckpt", str(memorized.run_dir), "--prompt", prefix, "--greedy", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert out == MEMORIZED + "\n"
    assert "KV cache" in err and f"step {STEPS}" in err


def test_generate_cli_prompt_file_seed_and_checkpoint_forms(tiny_run: Path, tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The list type\n\nA tuple\n")
    args = ["generate", "--prompt-file", str(prompts), "--max-new-tokens", "8", "--seed", "5", "--device", "cpu"]
    outputs = []
    for ckpt in (tiny_run, tiny_run / "checkpoints" / "last.ckpt", tiny_run, tiny_run):
        seed = ["--seed", "6"] if len(outputs) == 3 else []
        capsys.readouterr()
        assert main([*args, "--ckpt", str(ckpt), *seed]) == 0
        outputs.append(capsys.readouterr().out)
    first = outputs[0].split("\n\n")
    assert len(first) == 2 and first[0].startswith("The list type") and first[1].startswith("A tuple")
    assert outputs[0] == outputs[1] == outputs[2]  # a run dir is its last.ckpt; the same seed, the same text
    assert outputs[3] != outputs[0]  # another seed samples other tokens


def test_generate_bad_input_is_one_line(tiny_run: Path, tmp_path: Path, capsys) -> None:
    def error(*argv: str) -> str:
        return one_line_error(capsys, ["generate", *argv, "--device", "cpu"], "generate")

    assert "does not exist" in error("--ckpt", str(tmp_path / "missing.ckpt"), "--prompt", "x")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    assert "is not a PyTorch checkpoint file" in error("--ckpt", str(text), "--prompt", "x")
    good = (tiny_run / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(good[: len(good) // 2])
    assert "is truncated" in error("--ckpt", str(cut), "--prompt", "x", "--tokenizer", "qwen3")
    assert f"run directory {cut.parent.parent} has no config.yaml" in error(
        "--ckpt", str(cut.parent.parent), "--prompt", "x"
    )
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert "is not a lit_ffn checkpoint" in error("--ckpt", str(foreign), "--prompt", "x", "--tokenizer", "qwen3")
    copied = tmp_path / "copied.ckpt"
    copied.write_bytes(good)
    assert "cannot tell which tokenizer" in error("--ckpt", str(copied), "--prompt", "x")
    assert "--temperature must be" in error("--ckpt", str(tiny_run), "--prompt", "x", "--temperature", "-1")
    assert "no prompt" in error("--ckpt", str(tiny_run))
