"""``model.loss_impl``: every backend computes the chunked loss's value and gradients, and one that cannot run
here is refused in one line (``lit_ffn.loss_backends``).

On CPU the library plumbing is tested through Cut Cross-Entropy's ``torch_compile`` implementation
(``cce_torch_compile``); CCE's Triton kernels and Liger's run only on CUDA (the GPU check measures them).
The compiled function is CCE's own, one per process: the fp32 tests share one compilation (dynamic
shapes; the head is an ``nn.Parameter`` in both, dynamo guards on the type), bf16 adds one; tiny
shapes keep each to seconds once inductor's on-disk cache is warm (20–40 s each cold, on 2 busy cores).
"""

from __future__ import annotations

import pytest
import torch

from lit_ffn import loss_backends
from lit_ffn.errors import UserError
from lit_ffn.loss import IGNORE_INDEX
from lit_ffn.loss_backends import LOSS_IMPLS, check_loss_impl, linear_cross_entropy, problem, resolve, runs_on
from lit_ffn.model import Decoder


def _inputs(n: int = 37, d: int = 16, v: int = 101, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, requires_grad=True)
    # a Parameter, as the model's head is: dynamo guards on the type, and one compilation serves every fp32 test
    weight = torch.nn.Parameter(0.5 * torch.randn(v, d, generator=g))
    targets = torch.randint(0, v, (n,), generator=g)
    targets[::5] = IGNORE_INDEX
    return hidden, weight, targets


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_auto_is_chunked_until_a_gpu_measures_and_names_a_real_backend() -> None:
    assert resolve("auto", "cpu") == "chunked"  # no fused backend runs on CPU
    assert resolve("auto", "cuda", chunk_size=0) == "chunked"  # loss_chunk_size 0: the plain loss, as before
    for device in ("cpu", "cuda", "mps"):
        assert resolve("auto", device) in LOSS_IMPLS and resolve("auto", device) != "auto"
    assert resolve("cce", "cpu") == "cce"
    assert runs_on("cpu") == ["chunked", "cce_torch_compile"]
    assert runs_on("cuda") == ["chunked", "cce", "cce_torch_compile", "liger"]


@pytest.mark.parametrize("impl", ["cce", "liger"])
def test_cuda_backends_on_cpu_are_one_line_naming_what_runs_here(impl: str) -> None:
    hidden, weight, targets = _inputs()
    with pytest.raises(UserError) as info:
        check_loss_impl(impl, "cpu", "bf16-mixed")
    message = str(info.value)
    assert message.startswith(f"model.loss_impl={impl} runs only on CUDA GPUs") and "\n" not in message
    assert "use one of chunked, cce_torch_compile" in message
    # called directly on CPU tensors: the same line, not the library's "0 active drivers"
    with pytest.raises(UserError, match=f"model.loss_impl={impl} runs only on CUDA"):
        linear_cross_entropy(hidden, weight, targets, impl)


def test_cce_refuses_an_fp32_head_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loss_backends, "_missing", lambda backend: None)  # as if installed
    message = problem("cce", "cuda", torch.float32)
    assert message is not None and "use trainer.precision=bf16-mixed, or model.loss_impl=chunked" in message
    assert problem("cce", "cuda", torch.bfloat16) is None and problem("cce", "cuda", torch.float16) is None
    with pytest.raises(UserError, match="computes the head in float32"):
        check_loss_impl("cce", "cuda", "32-true")
    check_loss_impl("cce", "cuda", "bf16-mixed")
    check_loss_impl("liger", "cuda", "32-true")  # Liger takes fp32 operands
    assert problem("chunked", "cpu") is None and problem("auto", "cuda") is None
    with pytest.raises(UserError, match="model.loss_impl=fused: unknown; choose one of auto, chunked, cce"):
        check_loss_impl("fused", "cpu")


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else real(name))
    loss_backends._missing.cache_clear()
    try:
        message = problem("liger", "cuda", torch.bfloat16)
    finally:
        loss_backends._missing.cache_clear()
    assert message == (
        "model.loss_impl=liger needs the liger-kernel package, which is not installed: "
        "pip install 'lit_ffn[liger]' (or pip install liger-kernel==0.8.5)"
    )


# ---- Cut Cross-Entropy's torch.compile implementation against the chunked loss (CPU) -----------------------


@pytest.fixture(scope="module")
def cce() -> None:
    pytest.importorskip("cut_cross_entropy", reason="the [cce] extra: pip install 'lit_ffn[cce]'")


def test_cce_torch_compile_equals_chunked_with_ignored_targets(cce: None) -> None:
    hidden, weight, targets = _inputs()
    expected = linear_cross_entropy(hidden, weight, targets, "chunked", chunk_size=8)
    exp_grads = torch.autograd.grad(expected * 3.0, (hidden, weight))
    got = linear_cross_entropy(hidden, weight, targets, "cce_torch_compile")
    grads = torch.autograd.grad(got * 3.0, (hidden, weight))
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    for g, e in zip(grads, exp_grads):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-6)
    assert grads[0][::5].abs().max() == 0  # ignored targets: no gradient into their hidden states


def test_cce_torch_compile_through_a_tied_head(cce: None) -> None:
    """The decoder's loss with the head tied to the embedding: the embedding's gradient holds both uses."""
    from lit_ffn.ffn import SwiGLU

    torch.manual_seed(0)
    model = Decoder(SwiGLU, vocab_size=101, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8)
    assert model.head_weight is model.embed.weight
    tokens = torch.randint(0, 101, (2, 11))
    results = {}
    for impl in ("chunked", "cce_torch_compile"):
        model.zero_grad()
        loss = model(tokens[:, :-1], tokens[:, 1:], loss_chunk_size=5, loss_impl=impl)
        loss.backward()
        results[impl] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (loss_a, grads_a), (loss_b, grads_b) = results.values()
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=2e-6)
    assert grads_a.keys() == grads_b.keys() and "embed.weight" in grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_cce_torch_compile_under_bf16_autocast(cce: None) -> None:
    """bf16-mixed: both multiply in bf16 and take the softmax in fp32; gradients come back in fp32.  The two
    round the bf16 operands of the gradient matmuls at different points: equal to bf16 precision."""
    hidden, weight, targets = _inputs(seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = linear_cross_entropy(hidden, weight, targets, "chunked", chunk_size=8)
        got = linear_cross_entropy(hidden, weight, targets, "cce_torch_compile")
    exp_grads = torch.autograd.grad(expected, (hidden, weight))
    grads = torch.autograd.grad(got, (hidden, weight))
    got, expected = got.detach(), expected.detach()
    assert got.dtype == expected.dtype == torch.float32
    assert abs(float(got) - float(expected)) < 1e-3 * float(expected)
    for g, e in zip(grads, exp_grads):
        assert g.dtype == torch.float32 and _rel(g, e) < 2e-2
    # autocast was in effect: the fp32 loss differs by more than the two bf16 ones from each other
    with torch.no_grad():
        fp32 = linear_cross_entropy(hidden, weight, targets, "chunked", chunk_size=8)
    assert abs(float(fp32) - float(expected)) > 10 * abs(float(got) - float(expected))
