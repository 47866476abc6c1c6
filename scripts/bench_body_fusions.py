"""A/B of eager fusions of the decoder body that lit_ffn does *not* ship, measured (docs/benchmarks.md).

Issue 22 asked whether the body (norms, RoPE, projections) could be made faster than the ATen ops it
shares with transformers and litgpt. This script builds the same :class:`~lit_ffn.model.Decoder` several
times with the same initial weights, patches some copies with the candidate fast paths below, and times
their training steps (forward with the loss, backward, clipping, AdamW: ``lit_ffn bench``'s step)
interleaved, in one process:

* ``rms``: ``torch.nn.functional.rms_norm`` (ATen's fused kernel; bitwise equal in fp32) for
  :class:`~lit_ffn.model.RMSNorm`;
* ``attn``: QK-norm and RoPE applied in the (B, T, H, E) layout of the projections (contiguous), then one
  transpose for SDPA;
* ``qkv``: one matmul with the concatenated q/k/v weights (the parameters and the checkpoint layout stay
  as they are: the weights are concatenated per step);
* ``ropefn``: RoPE as an ``autograd.Function`` of three kernels each way
  (``x·cos + roll(x)·sin±``; backward ``g·cos + roll⁻¹(g·sin±)``), saving nothing but cos/sin.

Every variant's first losses are printed (they agree to 1e-6 with the unpatched model); then the median
step time of each, and its speed-up over ``base``.

    python scripts/bench_body_fusions.py configs/quickstart.yaml rms attn rms+attn+qkv+ropefn
    python scripts/bench_body_fusions.py configs/quickstart.yaml,configs/ladder/cpu/d048l2.yaml rms+attn+qkv+ropefn
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
import torch.nn.functional as F

from lit_ffn import model as M
from lit_ffn.bench.runners import lit_runner
from lit_ffn.bench.settings import ModelConfigs, Settings

CANDIDATES = ("rms", "attn", "qkv", "ropefn")


def rms_norm_fused(self: M.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
    return self.weight * F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype)


class RotaryFunction(torch.autograd.Function):
    """y = x·cos + roll(x, E/2)·sin±, sin± = (−sin of the first half, sin of the second)."""

    @staticmethod
    def forward(ctx, x, cos, signed_sin):  # type: ignore[override]
        ctx.save_for_backward(cos, signed_sin)
        return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), signed_sin)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        cos, signed_sin = ctx.saved_tensors
        return grad * cos + (grad * signed_sin).roll(-(grad.shape[-1] // 2), -1), None, None


def attention_fast(self: M.Attention, x, cos, sin, kv=None, *, qkv: bool = False, ropefn: bool = False):
    B, T, _ = x.shape
    H, K, E = self.n_heads, self.n_kv_heads, self.head_dim
    if qkv:
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        q, k, v = F.linear(x, weight).split([H * E, K * E, K * E], dim=-1)
    else:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
    q, k, v = self.q_norm(q.view(B, T, H, E)), self.k_norm(k.view(B, T, K, E)), v.view(B, T, K, E)
    c, s = cos[:, None, :], sin[:, None, :]  # (T, 1, E): broadcast over the heads of (B, T, H, E)
    if ropefn:
        half = E // 2
        signed = torch.cat((-s[..., :half], s[..., half:]), -1)
        q, k = RotaryFunction.apply(q, c, signed), RotaryFunction.apply(k, c, signed)
    else:
        q, k = M.apply_rotary(q, c, s), M.apply_rotary(k, c, s)
    y = self._sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    return self.o_proj(y.transpose(1, 2).reshape(B, T, H * E))


def patch(decoder: M.Decoder, parts: set[str]) -> None:
    for module in decoder.modules():
        if "rms" in parts and isinstance(module, M.RMSNorm):
            module.forward = types.MethodType(rms_norm_fused, module)
        if parts & {"attn", "qkv", "ropefn"} and isinstance(module, M.Attention):
            fast = attention_fast.__get__(module)
            module.forward = lambda *a, _f=fast, **k: _f(*a, qkv="qkv" in parts, ropefn="ropefn" in parts, **k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", help="comma-separated fit configs (composed in order)")
    parser.add_argument("variants", nargs="+", help=f"'+'-joined subsets of {', '.join(CANDIDATES)}")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    configs = ModelConfigs(args.configs.split(","))
    settings = Settings(
        device=torch.device("cpu"),
        precision="32-true",
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        steps=args.steps,
        warmup=3,
        compile=False,
        grad_clip=1.0,
        vocab_size=0,
    )
    runners = {}
    for variant in ["base", *args.variants]:
        parts = set() if variant == "base" else set(variant.split("+"))
        if parts - set(CANDIDATES):
            parser.error(f"unknown candidate(s) {sorted(parts - set(CANDIDATES))}: use {', '.join(CANDIDATES)}")
        runner = lit_runner(configs, None, settings)
        patch(runner.module.model, parts)
        runners[variant] = runner
    vocab = runners["base"].module.model.vocab_size
    block = torch.randint(0, vocab, (args.batch_size, args.seq_len + 1), generator=torch.Generator().manual_seed(0))
    tokens, targets = block[:, :-1].contiguous(), block[:, 1:].contiguous()
    for variant, runner in runners.items():
        losses = [runner.step(tokens, targets).item() for _ in range(settings.warmup)]
        print(f"{variant:24s} first losses " + " ".join(f"{loss:.6f}" for loss in losses))
    times: dict[str, list[float]] = {variant: [] for variant in runners}
    for _ in range(args.steps):
        for variant, runner in runners.items():
            start = time.perf_counter()
            runner.step(tokens, targets)
            times[variant].append(time.perf_counter() - start)
    base = statistics.median(times["base"])
    print(f"{torch.get_num_threads()} torch thread(s), {args.steps} interleaved steps per variant")
    for variant, values in times.items():
        median = statistics.median(values)
        print(f"{variant:24s} {1e3 * median:8.2f} ms  ×{base / median:.3f}")


if __name__ == "__main__":
    main()
