"""A Qwen3-style decoder whose feed-forward block is pluggable.

Architecture (Qwen3 technical report, 2025; numerically identical to
``transformers``' ``Qwen3ForCausalLM`` when given a SwiGLU FFN — see
``tests/test_model_parity.py``)::

    h_0     = Embed(tokens)                                   (B, T, D)
    h'_l    = h_{l-1} + Attn(RMSNorm(h_{l-1}))                pre-norm residual
    h_l     = h'_l    + FFN_l(RMSNorm(h'_l))
    logits  = RMSNorm(h_L) · Wᵀ                               W tied to Embed (default)

Attention: no biases, grouped-query attention (``n_heads`` query heads share
``n_kv_heads`` key/value heads), ``head_dim`` independent of the width,
RMSNorm on every head's q and k *before* rotary embedding (QK-norm), RoPE with
base ``rope_theta`` (default 1e6), causal ``torch.nn.functional.scaled_dot_product_attention``.
Grouped-query attention goes to SDPA as it is (``enable_gqa``, ``sdpa_gqa="native"``) or with the
kv heads repeated to ``n_heads`` first (``sdpa_gqa="expand"``), for devices whose fused SDPA
kernels do not take ``enable_gqa`` and would fall back to the math kernel (the same numbers:
SDPA's own GQA is defined as that repetition; ``lit_ffn.bench.gpu_check`` tells which applies).

Shapes: B batch, T sequence, D model width, H query heads, K kv heads,
E head_dim, V vocabulary.

Incremental decoding (generation): ``Decoder.forward(tokens, cache=KVCache)``
runs only the new tokens, at positions ``cache.length …``, attending to the
keys and values the cache holds for the earlier ones (``lit_ffn.inference``).
Without a cache — training, validation — the code path is the plain causal
one above, unchanged.

Initialisation by path (:meth:`Decoder.init_weights`): every tensor's initial values come from its
own random stream, keyed by the model's ``init_seed`` and the tensor's name in the decoder
(``layers.2.attn.q_proj.weight``), as Levanter splits its model key per layer and projection.
Changing one module (another FFN class or width) therefore leaves every other module's initial
weights exactly as they were, and a decoder materialised from the meta device (FSDP2) gets the same
values as one built on a CPU, shard by shard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lit_ffn.loss_backends import linear_cross_entropy
from lit_ffn.seeds import path_seed

FFNFactory = Callable[[int], nn.Module]


def _assign(tensor: torch.Tensor, full: torch.Tensor) -> None:
    """Copy the full-shape CPU tensor ``full`` into ``tensor``, which may be a DTensor shard (FSDP2):
    each rank keeps its own slice of the same full tensor (``src_data_rank=None``: no communication)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(tensor, DTensor):
        full = distribute_tensor(
            full.to(tensor.device, tensor.dtype), tensor.device_mesh, tensor.placements, src_data_rank=None
        )
    tensor.copy_(full)


def normal_by_path(tensor: torch.Tensor, std: float, init_seed: int, path: str) -> None:
    """Fill ``tensor`` (any device, dtype, or an FSDP2 shard) with N(0, std²) drawn in fp32 on the CPU
    from the stream :func:`path_seed` ``(init_seed, path)`` (the same values on every device)."""
    generator = torch.Generator(device="cpu").manual_seed(path_seed(init_seed, path))
    _assign(tensor, torch.empty(tensor.shape, dtype=torch.float32).normal_(0.0, std, generator=generator))


#: How grouped-query attention reaches SDPA (see the module docstring).
SDPA_GQA_MODES = ("native", "expand")


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): y = w ⊙ x / sqrt(mean(x²) + eps).

    Computed in fp32 and cast back before the weight is applied, exactly as
    Qwen3 does (``torch.nn.RMSNorm`` computes in the input dtype, which loses
    precision in bf16; hence written out here).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer eq. 34), half-split layout.

    For position t and frequency ω_i = θ^(-2i/E), i < E/2, the pair
    (x_i, x_{i+E/2}) is rotated by angle t·ω_i.  ``forward(T)`` returns cos and
    sin of shape (T, E), cached and grown on demand.
    """

    def __init__(self, head_dim: int, theta: float = 1e6) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def inv_freq(self, device: torch.device | None = None) -> torch.Tensor:
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
        return 1.0 / (self.theta**exponent)

    def forward(self, seq_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._cache
        if cache is None or cache[0].shape[0] < seq_len or cache[0].device != device:
            # A cache first built under torch.inference_mode (validate/test/generation before fit)
            # would be an inference tensor that autograd refuses to save for backward.
            with torch.inference_mode(False):
                t = torch.arange(seq_len, device=device, dtype=torch.float32)
                freqs = torch.outer(t, self.inv_freq(device))
                emb = torch.cat((freqs, freqs), dim=-1)
                cache = self._cache = (emb.cos(), emb.sin())
        return cache[0][:seq_len], cache[1][:seq_len]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, E) by (T, E) cos/sin: x·cos + rotate_half(x)·sin, in fp32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class LayerKV:
    """One layer's keys and values of the tokens decoded so far, for incremental decoding.

    Buffers ``k``, ``v`` of shape (B, K, S_max, E), filled at positions ``[0, length)``; keys are stored
    after QK-norm and RoPE, i.e. exactly what attention consumes.
    """

    def __init__(
        self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.k = torch.empty(batch, n_kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, K, T, E) new keys/values at ``[length, length + T)``; return all (B, K, length + T, E)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(f"KV cache holds {self.k.shape[2]} positions, {end} needed: make a larger cache")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """Every layer's :class:`LayerKV`: the state of an incremental decode of ``batch`` sequences.

    ``length`` is the number of positions already processed; the next ``Decoder.forward(tokens, cache=…)``
    places ``tokens`` (B, T) at positions ``length … length + T - 1``.
    """

    def __init__(self, layers: list[LayerKV]) -> None:
        self.layers = layers

    @classmethod
    def for_decoder(cls, decoder: Decoder, batch: int, max_len: int) -> KVCache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` positions, in the decoder's dtype and device.

        Memory: 2 · n_layers · batch · K · max_len · E values."""
        param = decoder.embed.weight
        layers = [
            LayerKV(batch, block.attn.n_kv_heads, max_len, block.attn.head_dim, param.dtype, param.device)
            for block in decoder.layers
        ]
        decoder.rope(max_len, param.device)  # build cos/sin once for every position the decode will reach
        return cls(layers)

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0


class Attention(nn.Module):
    """Causal GQA self-attention with QK-norm and RoPE, through torch SDPA.

    ``sdpa_gqa``: ``"native"`` passes the K kv heads with ``enable_gqa``; ``"expand"`` repeats
    each kv head H/K times (``repeat_interleave``, the definition of SDPA's GQA) and calls SDPA
    on H heads without ``enable_gqa``, for kernels that do not support it.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        norm_eps: float = 1e-6,
        sdpa_gqa: str = "native",
    ) -> None:
        super().__init__()
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
        if sdpa_gqa not in SDPA_GQA_MODES:
            raise ValueError(f"sdpa_gqa must be one of {', '.join(SDPA_GQA_MODES)}, got {sdpa_gqa!r}")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.sdpa_gqa = sdpa_gqa
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.q_norm = RMSNorm(head_dim, norm_eps)
        self.k_norm = RMSNorm(head_dim, norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: LayerKV | None = None) -> torch.Tensor:
        """(B, T, D) → (B, T, D); ``cos``/``sin`` (T, E) are those of the T positions of ``x``.

        With ``kv`` the T new positions also attend to the cached earlier ones (and are cached)."""
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)  # (B, H, T, E)
        k = self.k_norm(self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)).transpose(1, 2)  # (B, K, T, E)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, K, T, E)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = self._sdpa(q, k, v, is_causal=True) if kv is None else self._attend_cached(q, k, v, kv)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """SDPA of queries (B, H, T, E) over K kv heads (B, K, S, E), grouped as ``sdpa_gqa`` says
        (the one place both the training and the cached decoding path go through)."""
        grouped = self.n_heads != self.n_kv_heads
        if grouped and self.sdpa_gqa == "expand":  # (B, K, S, E) -> (B, H, S, E): kv head j serves heads j·H/K …
            repeats = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
            grouped = False
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=grouped, **kwargs)

    def _attend_cached(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv: LayerKV) -> torch.Tensor:
        """Attention of T new queries (B, H, T, E) over P cached + T new keys: query i (position P + i) sees
        keys j ≤ P + i.  SDPA's ``is_causal`` aligns the mask top-left, right only when P = 0; one new
        token (T = 1) sees every key, so needs no mask."""
        past = kv.length
        k, v = kv.append(k, v)
        if past == 0:
            return self._sdpa(q, k, v, is_causal=True)
        if q.shape[2] == 1:
            return self._sdpa(q, k, v)
        mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(diagonal=past)
        return self._sdpa(q, k, v, attn_mask=mask)


class Block(nn.Module):
    """Pre-norm decoder block: x + Attn(norm(x)), then + FFN(norm(·))."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        ffn: FFNFactory,
        norm_eps: float = 1e-6,
        sdpa_gqa: str = "native",
    ) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(dim, norm_eps)
        self.attn = Attention(dim, n_heads, n_kv_heads, head_dim, norm_eps, sdpa_gqa)
        self.ffn_norm = RMSNorm(dim, norm_eps)
        self.ffn = ffn(dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: LayerKV | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, kv)
        return x + self.ffn(self.ffn_norm(x))


class Decoder(nn.Module):
    """Token ids (B, T) → final hidden states (B, T, D) or the loss; ``logits``
    maps hidden states to (B, T, V) for evaluation and tests.  Training never
    builds the (B, T, V) logits at once (``lit_ffn.loss``, ``lit_ffn.loss_backends``)."""

    def __init__(
        self,
        ffn: FFNFactory,
        vocab_size: int = 151_936,
        dim: int = 512,
        n_layers: int = 8,
        n_heads: int = 8,
        n_kv_heads: int = 4,
        head_dim: int = 64,
        rope_theta: float = 1e6,
        norm_eps: float = 1e-6,
        tie_embeddings: bool = True,
        init_std: float = 0.02,
        sdpa_gqa: str = "native",
        init_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.init_std = vocab_size, dim, init_std
        # None: the seed torch's global generator was last seeded with (seed_everything's, under the CLI)
        self.init_seed = torch.initial_seed() if init_seed is None else int(init_seed)
        self.embed = nn.Embedding(vocab_size, dim)
        self.rope = RotaryEmbedding(head_dim, rope_theta)
        self.layers = nn.ModuleList(
            Block(dim, n_heads, n_kv_heads, head_dim, ffn, norm_eps, sdpa_gqa) for _ in range(n_layers)
        )
        self.norm = RMSNorm(dim, norm_eps)
        self.lm_head: nn.Linear | None = None if tie_embeddings else nn.Linear(dim, vocab_size, bias=False)
        self.init_weights()
        # Counted now, while every parameter has its full shape: FSDP1 later turns them into flat
        # local shards (FSDP2's DTensors would still report global sizes, FSDP1's views do not).
        self._num_parameters = sum(p.numel() for p in self.parameters())
        self._num_embedding_parameters = self.embed.weight.numel()

    @property
    def head_weight(self) -> torch.Tensor:
        """(V, D) output projection: the embedding matrix when tied."""
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, init_std) for every Linear and the embedding (as Qwen3's ``initializer_range``),
        zero biases; every other module restores its own initial values through ``reset_parameters()``
        (norms, DynamicGEGLU's s and b, …).

        Each weight ``W`` named ``path`` (``layers.1.ffn.up_proj.weight``) is drawn from its own stream,
        ``torch.Generator().manual_seed(path_seed(init_seed, path))``, in fp32 on the CPU, then copied
        to its device and dtype (:func:`normal_by_path`); a module's ``reset_parameters()`` runs with
        the global CPU generator forked and seeded by ``path_seed(init_seed, module path)``, so that a
        user FFN that draws random values there is keyed by its path too (its CUDA draws are not).
        Hence a tensor's initial value depends only on ``init_seed``, its name and its shape: not on
        which other modules exist, their sizes, the order they are built in, or the device.

        Tensors on the meta device are skipped; after ``to_empty()`` this initialises them, including
        FSDP2 shards (each rank keeps its slice of the full tensor: the same values as unsharded)."""
        for path, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                if not module.weight.is_meta:
                    normal_by_path(module.weight, self.init_std, self.init_seed, f"{path}.weight")
                if getattr(module, "bias", None) is not None and not module.bias.is_meta:
                    module.bias.zero_()
            elif module is not self and hasattr(module, "reset_parameters"):
                if any(t.is_meta for t in module.parameters(recurse=False)):
                    continue
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(path_seed(self.init_seed, path))
                    module.reset_parameters()

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_chunk_size: int | None = 1024,
        cache: KVCache | None = None,
        loss_impl: str = "auto",
    ) -> torch.Tensor:
        """(B, T) ids → (B, T, D) final hidden states, or with ``targets`` (B, T)
        the mean next-token loss, computed by backend ``loss_impl`` (``lit_ffn.loss_backends``;
        ``auto``: chunked over tokens, see ``lit_ffn.loss``).

        The loss is computed here, inside ``forward``, so that under FSDP the
        tied head weight is used while it is unsharded.

        ``cache`` (inference): ``tokens`` are positions ``cache.length …`` of sequences whose earlier
        positions the cache holds; their keys and values are added to it.  The result equals the
        uncached forward of the whole sequence at those positions (up to float rounding)."""
        x = self.embed(tokens)
        if cache is None:
            cos, sin = self.rope(tokens.shape[1], tokens.device)
            for layer in self.layers:
                x = layer(x, cos, sin)
        else:
            start = cache.length
            cos, sin = self.rope(start + tokens.shape[1], tokens.device)
            cos, sin = cos[start:], sin[start:]
            for layer, kv in zip(self.layers, cache.layers, strict=True):
                x = layer(x, cos, sin, kv)
        hidden = self.norm(x)
        if targets is None:
            return hidden
        return linear_cross_entropy(hidden, self.head_weight, targets, loss_impl, loss_chunk_size)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.head_weight)

    def num_parameters(self, exclude_embedding: bool = False) -> int:
        """Parameters counted once (a tied head is not counted twice), as built — the same
        number before and after FSDP sharding, compile or activation-checkpoint wrapping."""
        n = self._num_parameters
        return n - self._num_embedding_parameters if exclude_embedding else n


__all__ = [
    "SDPA_GQA_MODES",
    "Attention",
    "Block",
    "Decoder",
    "FFNFactory",
    "KVCache",
    "LayerKV",
    "RMSNorm",
    "RotaryEmbedding",
    "apply_rotary",
    "normal_by_path",
]
