"""The lit_ffn decoder with SwiGLU is numerically transformers' Qwen3ForCausalLM."""

from __future__ import annotations

import pytest
import torch

from lit_ffn.ffn import SwiGLU
from lit_ffn.model import Decoder

transformers = pytest.importorskip("transformers")


def qwen3_pair(tie: bool = True, n_heads: int = 4, n_kv_heads: int = 2, sdpa_gqa: str = "native"):
    """A small random Qwen3ForCausalLM (no hub access) and a lit_ffn Decoder with its weights."""
    config = transformers.Qwen3Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        head_dim=24,  # independent of hidden_size / n_heads, as in Qwen3
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        attention_bias=False,
        max_position_embeddings=128,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    hf = transformers.Qwen3ForCausalLM(config).eval()
    ours = Decoder(
        ffn=lambda dim: SwiGLU(dim, hidden_dim=config.intermediate_size),
        vocab_size=config.vocab_size,
        dim=config.hidden_size,
        n_layers=config.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=config.head_dim,
        rope_theta=1e6,
        norm_eps=1e-6,
        tie_embeddings=tie,
        sdpa_gqa=sdpa_gqa,
    ).eval()
    load_hf_qwen3_weights(ours, hf)
    return hf, ours


def load_hf_qwen3_weights(ours: Decoder, hf) -> None:
    """Copy a transformers Qwen3 state dict into the lit_ffn layout (names differ only in prefixes)."""
    src = hf.state_dict()
    renames = {
        "model.embed_tokens.weight": "embed.weight",
        "model.norm.weight": "norm.weight",
        "lm_head.weight": "lm_head.weight",
    }
    layer_parts = {
        "self_attn.": "attn.",
        "input_layernorm.": "attn_norm.",
        "post_attention_layernorm.": "ffn_norm.",
        "mlp.": "ffn.",
    }
    target = {}
    for name, tensor in src.items():
        if name.startswith("model.layers."):
            new = name.removeprefix("model.")
            for old, repl in layer_parts.items():
                new = new.replace(old, repl)
        else:
            new = renames[name]
        target[new] = tensor
    if ours.lm_head is None:
        target.pop("lm_head.weight", None)
    missing, unexpected = ours.load_state_dict(target, strict=True)
    assert not missing and not unexpected


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("heads", [(4, 2), (4, 4), (4, 1)])
@pytest.mark.parametrize("sdpa_gqa", ["native", "expand"])
def test_logits_match_transformers_qwen3(tie: bool, heads: tuple[int, int], sdpa_gqa: str) -> None:
    hf, ours = qwen3_pair(tie, *heads, sdpa_gqa=sdpa_gqa)
    tokens = torch.randint(0, 512, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(tokens).logits
        got = ours.logits(ours(tokens))
    assert got.shape == expected.shape == (2, 37, 512)
    assert (got - expected).abs().max().item() <= 1e-4


def test_loss_matches_transformers_qwen3() -> None:
    hf, ours = qwen3_pair()
    tokens = torch.randint(0, 512, (2, 33), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf(tokens, labels=tokens).loss  # HF shifts labels inside
        got = ours(tokens[:, :-1], tokens[:, 1:])
    assert abs(got.item() - expected.item()) <= 1e-5


def test_decoder_rejects_bad_head_layout() -> None:
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        Decoder(SwiGLU, vocab_size=32, dim=16, n_layers=1, n_heads=3, n_kv_heads=2, head_dim=8)
    with pytest.raises(ValueError, match="even"):
        Decoder(SwiGLU, vocab_size=32, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=7)


def test_expanded_kv_heads_are_enable_gqa() -> None:
    """model.sdpa_gqa=expand (kv heads repeated before SDPA, for kernels without GQA) computes what
    enable_gqa computes: the same loss bit for bit, gradients equal up to the order of their sums."""
    torch.manual_seed(0)
    native = Decoder(SwiGLU, vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8)
    expand = Decoder(SwiGLU, vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, sdpa_gqa="expand")
    expand.load_state_dict(native.state_dict())
    tokens = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(3))
    losses = []
    for model in (native, expand):
        loss = model(tokens[:, :-1], tokens[:, 1:], loss_chunk_size=0)
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    for (name, a), b in zip(native.named_parameters(), expand.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="sdpa_gqa must be one of native, expand"):
        Decoder(SwiGLU, vocab_size=32, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, sdpa_gqa="repeat")
