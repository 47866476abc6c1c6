"""Which implementation computes the training loss: ``model.loss_impl``.

Every backend computes the same quantity as :mod:`lit_ffn.loss`, from the final hidden states
H (N, D), the head W (V, D) and the targets y (N,)::

    ℓ = (1/N) Σ_n [ lse_n(H Wᵀ) − (H Wᵀ)_{n, y_n} ]     N: targets ≠ IGNORE_INDEX (-100); ℓ = 0 if none

with the matmuls in the dtype ``F.linear`` would use (the autocast dtype under ``bf16-mixed``) and the
softmax and loss in fp32.  They differ in how the (N, V) logits are (not) stored:

=====================  ===========================================================  ==============  =========
``model.loss_impl``    what computes it                                             runs on         extra
=====================  ===========================================================  ==============  =========
``chunked``            :class:`lit_ffn.loss.ChunkedLinearCrossEntropy` (1024 rows   anywhere        —
                       at a time; ``model.loss_chunk_size: 0`` = plain
                       ``F.cross_entropy`` on the full logits)
``cce``                Apple's Cut Cross-Entropy (``cut-cross-entropy``, Triton):   CUDA, with      ``[cce]``
                       logits only in on-chip memory                                bf16/fp16
                                                                                    matmuls
``cce_torch_compile``  Cut Cross-Entropy's ``torch_compile`` implementation: the    anywhere        ``[cce]``
                       plain loss compiled by inductor (full logits); on CPU for
                       testing the plumbing (first call compiles: ~10–70 s here)
``liger``              Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss``          CUDA            ``[liger]``
                       (chunked matmuls + a Triton softmax kernel)
``auto``               ``chunked`` on every device, until the GPU check
                       (``scripts/gpu_check.sh``, items ``loss`` and
                       ``throughput``) has measured which is fastest at the paper
                       shape on a GPU: :data:`AUTO`
=====================  ===========================================================  ==============  =========

Both libraries are called with ``reduction="sum"`` and divided by N here, so every backend returns
0 (not NaN) when every target is ignored, and no backend scales its low-precision gradient
buffers by 1/N (under fp16, 1/(N·V) would underflow; see :mod:`lit_ffn.loss`).  CCE runs with
``filter_eps=None``: its default gradient filter skips every vocabulary block whose softmax
entries are all below 2⁻¹² (bf16), which at initialisation (p ≈ 1/V = 6.6e-6 at V = 151,936)
drops the whole softmax part of the gradient — an approximation lit_ffn does not make silently.

:func:`check_loss_impl` turns a backend that cannot run (not installed, wrong device, fp32 head
for CCE) into one line, called when a run is set up (``LitDecoder.setup`` and ``lit_ffn fit``
before anything is built on disk); :func:`linear_cross_entropy` computes the loss.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from lit_ffn import loss as chunked_loss
from lit_ffn.errors import UserError
from lit_ffn.flops import precision_dtype
from lit_ffn.loss import IGNORE_INDEX

LossImpl = Literal["auto", "chunked", "cce", "cce_torch_compile", "liger"]
LOSS_IMPLS: tuple[str, ...] = get_args(LossImpl)

#: What ``auto`` resolves to, by device type.  ``chunked`` everywhere until a GPU measurement
#: (docs/results/gpu_check.md: the ``throughput`` item says which backend ``auto`` should pick)
#: decides otherwise; any device type not named here gets ``chunked``.
AUTO: dict[str, str] = {"cpu": "chunked", "cuda": "chunked"}


@dataclass(frozen=True)
class Backend:
    """A library loss backend: what it needs to run."""

    name: str
    module: str  # the import name
    distribution: str  # the PyPI name==version lit_ffn is tested with
    extra: str  # lit_ffn's pip extra that installs it
    devices: tuple[str, ...]  # torch device types it runs on
    low_precision_only: bool = False  # its kernels take bf16/fp16 operands only (CCE's backward)


LIBRARY_BACKENDS: dict[str, Backend] = {
    "cce": Backend("cce", "cut_cross_entropy", "cut-cross-entropy==25.1.1", "cce", ("cuda",), True),
    "cce_torch_compile": Backend("cce_torch_compile", "cut_cross_entropy", "cut-cross-entropy==25.1.1", "cce", ()),
    "liger": Backend("liger", "liger_kernel", "liger-kernel==0.8.5", "liger", ("cuda",)),
}


def matmul_dtype(precision: str) -> torch.dtype:
    """The dtype the head's matmul runs in under a Lightning ``trainer.precision`` string."""
    return precision_dtype(precision)


def resolve(impl: str, device_type: str, chunk_size: int | None = 1024) -> str:
    """The backend ``impl`` means on ``device_type``: ``auto`` → :data:`AUTO` (``chunked`` when
    ``chunk_size`` is 0, the plain loss); every other name is itself."""
    if impl != "auto":
        return impl
    if not chunk_size:
        return "chunked"
    return AUTO.get(device_type, "chunked")


def runs_on(device_type: str) -> list[str]:
    """The backends that run on ``device_type`` (installed or not)."""
    return ["chunked"] + [b.name for b in LIBRARY_BACKENDS.values() if not b.devices or device_type in b.devices]


def problem(impl: str, device_type: str, compute_dtype: torch.dtype = torch.float32) -> str | None:
    """Why ``impl`` cannot compute the loss on ``device_type`` with matmuls in ``compute_dtype``
    (one line, naming the setting and the fix), or None when it can."""
    if impl not in LOSS_IMPLS:
        return f"model.loss_impl={impl}: unknown; choose one of {', '.join(LOSS_IMPLS)}"
    backend = LIBRARY_BACKENDS.get(resolve(impl, device_type))
    if backend is None:
        return None
    if backend.devices and device_type not in backend.devices:
        here = ", ".join(runs_on(device_type))
        return (
            f"model.loss_impl={impl} runs only on {'/'.join(d.upper() for d in backend.devices)} GPUs (Triton kernels) "
            f"and this run is on {device_type}: there use one of {here} (auto picks {resolve('auto', device_type)})"
        )
    if backend.low_precision_only and compute_dtype not in (torch.bfloat16, torch.float16):
        return (
            f"model.loss_impl={impl}: Cut Cross-Entropy's kernels take bf16/fp16 operands, and this run computes the "
            f"head in {str(compute_dtype).removeprefix('torch.')}: use trainer.precision=bf16-mixed, "
            "or model.loss_impl=chunked"
        )
    return _missing(backend)


@functools.cache
def _missing(backend: Backend) -> str | None:
    if importlib.util.find_spec(backend.module) is None:
        return (
            f"model.loss_impl={backend.name} needs the {backend.distribution.split('==')[0]} package, which is not "
            f"installed: pip install 'lit_ffn[{backend.extra}]' (or pip install {backend.distribution})"
        )
    if importlib.util.find_spec("triton") is None:  # both libraries import triton at import time
        return (
            f"model.loss_impl={backend.name}: {backend.distribution.split('==')[0]} imports triton, which this "
            "torch installation lacks (CUDA builds of torch bring it): install triton, or use model.loss_impl=chunked"
        )
    return None


def check_loss_impl(impl: str, device_type: str, precision: str | torch.dtype = "32-true") -> None:
    """Raise a one-line :class:`UserError` when ``impl`` cannot run on ``device_type`` under
    ``precision`` (a ``trainer.precision`` string, or the head's matmul dtype)."""
    dtype = precision if isinstance(precision, torch.dtype) else matmul_dtype(precision)
    message = problem(impl, device_type, dtype)
    if message is not None:
        raise UserError(message)


def _valid_count(targets: torch.Tensor) -> torch.Tensor:
    """N, the targets that are not ignored, as a tensor ≥ 1 (no host-device sync; 0/1 = 0, not NaN)."""
    return (targets != IGNORE_INDEX).sum().clamp(min=1)


def _cce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, impl: str) -> torch.Tensor:
    from cut_cross_entropy import linear_cross_entropy as cce_loss

    # CCE's kernels ignore autocast: give them the operands F.linear would multiply, outside autocast
    # (the casts are differentiable: the gradients come back in the inputs' dtypes).
    dtype = chunked_loss._matmul_dtype(hidden, weight)
    with torch.autocast(hidden.device.type, enabled=False):
        total = cce_loss(
            hidden.to(dtype),
            weight.to(dtype),
            targets,
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            filter_eps=None,  # exact gradients: see the module docstring
            impl=impl,
        )
    return total.float() / _valid_count(targets)


@functools.cache
def _liger_loss() -> torch.nn.Module:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    # ∂W accumulated in fp32 whatever the operands' dtype (Liger's default follows the weight's)
    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum", accum_dtype=torch.float32)


def _liger(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Liger follows autocast itself (its Function is an amp custom_fwd): called as transformers calls it
    return _liger_loss()(weight, hidden, targets).float() / _valid_count(targets)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    impl: str = "auto",
    chunk_size: int | None = 1024,
) -> torch.Tensor:
    """Mean next-token loss of ``hidden (..., D) @ weight (V, D)ᵀ`` vs ``targets (...)`` by backend ``impl``.

    ``chunk_size`` is the ``chunked`` backend's rows per chunk (0: the plain loss); the others
    ignore it.  A backend that cannot run here raises :class:`UserError` (:func:`problem`).
    """
    backend = resolve(impl, hidden.device.type, chunk_size)
    if backend == "chunked":
        return chunked_loss.linear_cross_entropy(hidden, weight, targets, chunk_size)
    message = problem(backend, hidden.device.type, chunked_loss._matmul_dtype(hidden, weight))
    if message is not None:
        raise UserError(message)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if backend == "liger":
        return _liger(hidden, weight, targets)
    return _cce(hidden, weight, targets, "cce" if backend == "cce" else "torch_compile")


__all__ = [
    "AUTO",
    "LIBRARY_BACKENDS",
    "LOSS_IMPLS",
    "Backend",
    "LossImpl",
    "check_loss_impl",
    "linear_cross_entropy",
    "matmul_dtype",
    "problem",
    "resolve",
    "runs_on",
]
