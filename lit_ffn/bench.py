"""``lit_ffn bench``: training throughput of lit_ffn (and of transformers' Qwen3) on this device.

::

    lit_ffn bench --config configs/quickstart.yaml                         # the config's FFN
    lit_ffn bench --config configs/quickstart.yaml --ffn swiglu geglu dynamic_geglu
    lit_ffn bench --config configs/quickstart.yaml --compare-hf --json bench.json --markdown bench.md
    lit_ffn bench --config configs/quickstart.yaml --loss-chunk-size 4096 1024 0   # one model per value
    lit_ffn bench --config configs/paper/qwen3_83m.yaml --device cuda --compile --compare-hf

What is timed: one training step = forward (loss included: lit_ffn's chunked
cross-entropy, transformers' ``labels=`` loss) + backward + gradient clipping
(when the config sets ``trainer.gradient_clip_val``) + AdamW step +
``zero_grad``, on random tokens of the model's vocabulary (no dataset needed),
with the device synchronised before and after each step.  ``--warmup`` steps
per model are run first (optimizer state, compilation, allocator warm-up) and
not timed; then the models' timed steps are **interleaved** round-robin, so
that every model sees the same machine load (a shared CPU, a GPU's clocks).
The optimizer is the one ``lit_ffn fit`` builds (``LitDecoder.configure_optimizers``:
fused AdamW on CPU and CUDA); ``--compile`` applies what ``configure_model()``
applies without FSDP2 (:func:`lit_ffn.distributed.parallelize`: per-block
``torch.compile``), and compiles transformers' decoder layers the same way.

Reported per model: step time (median, min, max, quartiles), the process CPU
time per step (all threads; on a shared CPU less load-sensitive than wall
time), tokens/s (B·T / median step time), MFU and peak memory; a model that
runs out of GPU memory in its warm-up is reported as ``out of memory`` (so a
loop over ``--batch-size`` finds the largest micro-batch that fits).

* MFU = tokens/s · F / peak FLOP/s, with F = :func:`lit_ffn.model.flops_per_token`
  = 6·(non-embedding parameters + V·D for the head matmul, tied or not) +
  6·L·H·E·T for causal attention (QKᵀ and AV at half the T² work): the
  embedding *lookup* is excluded, the LM head included.  The transformers row
  uses the same F (same shape).  Peak FLOP/s: ``--peak-tflops``, else the
  device's dense datasheet figure for the compute dtype (Lightning's table;
  H100/H200 below), else on CPU the rate of a 2048³ matmul in the compute
  dtype measured on the spot (so CPU "MFU" is relative to what this CPU's
  GEMM reaches under the current load, and says so in ``peak_flops_source``).
* Peak memory: CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation
  before the model was built.  CPU (torch has no allocator statistics there;
  ``tracemalloc`` does not see torch's allocations): the process's peak
  resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus its
  resident set before the model was built.  Both are measured over the
  build and the warm-up steps of each model, one model at a time, so they
  include weights, gradients, AdamW state, activations and temporaries.

``--compare-hf`` builds the same shape as ``transformers.Qwen3ForCausalLM``
(SwiGLU with lit_ffn's hidden width, ``attn_implementation="sdpa"``, same
dtype, precision, batch and optimizer), copies lit_ffn's SwiGLU weights into
it (so the first losses agree: a check that both compute the same thing), and
reports tokens/s of lit_ffn / transformers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import yaml

from lit_ffn.errors import UserError

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")

#: Dense (no sparsity) peak FLOP/s of GPUs Lightning's table misses or lists with sparsity.
#: NVIDIA H100/H200 datasheets list bf16 1,979 TFLOPS "with sparsity", i.e. 989 dense.
DENSE_PEAK_FLOPS = {
    "h200": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, "tfloat32": 494.7e12, torch.float32: 66.9e12},
    "h100 sxm": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, "tfloat32": 494.7e12, torch.float32: 66.9e12},
}

FLOP_FORMULA = (
    "flops/token = 6*(N_non-embedding + V*D) + 6*L*H*E*T (lit_ffn.model.flops_per_token): "
    "forward+backward matmuls, LM head included (tied or not), embedding lookup excluded, "
    "causal attention QK^T and AV counted at half of T^2"
)


# --------------------------------------------------------------------- config
@dataclass
class Settings:
    """What every model in one bench run shares."""

    device: torch.device
    precision: str
    batch_size: int
    seq_len: int
    steps: int
    warmup: int
    compile: bool
    grad_clip: Optional[float]
    vocab_size: int
    seed: int = 0


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except yaml.YAMLError as err:
        raise UserError(f"--config {path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of config groups (trainer, model, data, …)")
    return data


def _model_parser() -> Any:
    from jsonargparse import ArgumentParser

    from lit_ffn.module import LitDecoder

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(LitDecoder, "model", fail_untyped=False, sub_configs=True)
    return parser


def _parse_model_section(parser: Any, section: dict[str, Any], base: Any, source: str) -> Any:
    """Apply one config's ``model:`` group on top of ``base``, as LightningCLI does for repeated --config."""
    from jsonargparse import ArgumentError

    from lit_ffn.errors import user_error_message

    try:
        return parser.parse_object({"model": section}, base)  # 2nd argument: cfg_base / namespace (jsonargparse ≥4.50)
    except ArgumentError as err:
        raise UserError(f"{source}: {user_error_message(err)}") from None


def ffn_section(name: str) -> dict[str, Any]:
    """``--ffn`` value → a ``model.ffn`` config: a built-in name (``configs/ffn/<name>.yaml``),
    a YAML file with ``model.ffn``, or the import path of an FFN class."""
    from lit_ffn.ffn import BUILTIN_FFNS

    key = name.lower()
    if key in BUILTIN_FFNS:
        section: dict[str, Any] = {"class_path": f"lit_ffn.ffn.{BUILTIN_FFNS[key].__name__}"}
        if key.endswith("_tanh"):
            section["init_args"] = {"approximate": "tanh"}
        return section
    if name.endswith((".yaml", ".yml")):
        ffn = _read_yaml(name).get("model", {}).get("ffn")
        if ffn is None:
            raise UserError(f"--ffn {name}: the file has no model.ffn")
        return ffn
    if "." in name:
        return {"class_path": name}
    raise UserError(
        f"--ffn {name!r}: not a built-in FFN ({', '.join(sorted(BUILTIN_FFNS))}), a YAML file or a class import path"
    )


def load_config(configs: list[str]) -> tuple[Any, dict[str, Any]]:
    """(parsed ``model`` namespace, merged plain dict of every config) for ``--config`` files, later ones winning."""
    parser = _model_parser()
    cfg = parser.get_defaults()
    merged: dict[str, Any] = {}
    for path in configs:
        data = _read_yaml(path)
        if "model" in data:
            cfg = _parse_model_section(parser, data["model"] or {}, cfg, f"--config {path}")
        for group, values in data.items():
            if isinstance(values, dict):
                merged.setdefault(group, {}).update(values)
            else:
                merged[group] = values
    return cfg, merged


def build_lit_model(cfg: Any, ffn: Optional[dict[str, Any]], overrides: dict[str, Any]) -> Any:
    """A :class:`~lit_ffn.module.LitDecoder` from a parsed config, with ``model.ffn`` and other model keys replaced."""
    parser = _model_parser()
    section = dict(overrides)
    if ffn is not None:
        section["ffn"] = ffn
    if section:
        cfg = _parse_model_section(parser, section, cfg, "--ffn")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(cfg).model


# --------------------------------------------------------------------- models
class Runner:
    """One model with its optimizer: ``step(tokens, targets)`` runs one training step, returns the loss."""

    def __init__(self, name: str, impl: str, ffn: str, module: torch.nn.Module, settings: Settings,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                 num_params: int, flops_per_token: float) -> None:
        self.name, self.impl, self.ffn, self.module, self.settings = name, impl, ffn, module, settings
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.num_params, self.flops_per_token = num_params, flops_per_token
        self.times: list[float] = []
        hparams = getattr(module, "hparams", {})
        self.loss_chunk_size: Optional[int] = hparams.get("loss_chunk_size") if impl == "lit_ffn" else None
        self.cpu_times: list[float] = []  # process CPU time (all threads) per step: less sensitive to a shared CPU
        self.losses: list[float] = []
        self.peak_mem: Optional[int] = None
        self.initial_weights: Optional[dict[str, torch.Tensor]] = None  # lit_ffn SwiGLU under --compare-hf
        self.error: Optional[str] = None

    def release(self) -> None:
        """Drop the model, its gradients and optimizer state (after an out-of-memory error)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.state.clear()
        self.module, self.params, self.loss_fn = torch.nn.Module(), [], None  # type: ignore[assignment]
        gc.collect()
        if self.settings.device.type == "cuda":
            torch.cuda.empty_cache()

    def step(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        settings = self.settings
        with torch.autocast(settings.device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16-mixed"):
            loss = self.loss_fn(tokens, targets)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def _prepare_module(module: torch.nn.Module, settings: Settings) -> torch.nn.Module:
    module.to(settings.device)
    if settings.precision == "bf16-true":
        module.to(torch.bfloat16)
    return module.train()


def lit_runner(cfg: Any, ffn: Optional[dict[str, Any]], settings: Settings, loss_chunk_size: Optional[int] = None,
               keep_initial_weights: bool = False) -> Runner:
    from lit_ffn.lightning_cli import ffn_variant_name
    from lit_ffn.model import flops_per_token

    torch.manual_seed(settings.seed)
    overrides: dict[str, Any] = {}
    if loss_chunk_size is not None:
        overrides["loss_chunk_size"] = loss_chunk_size
    if settings.compile:
        overrides["compile"] = True
    lit = build_lit_model(cfg, ffn, overrides)
    # transformers' copy must start from the same weights, taken before any warm-up step changes them
    initial = hf_state_dict(lit.model, clone=True) if keep_initial_weights else None
    checkpointing = bool(lit.hparams.get("activation_checkpointing"))
    if settings.compile or checkpointing:  # what LitDecoder.configure_model() does without FSDP2
        from lit_ffn.distributed import parallelize

        parallelize(lit.model, compile=settings.compile, activation_checkpointing=checkpointing)
    _prepare_module(lit, settings)
    variant = ffn_variant_name(ffn if ffn is not None else cfg.model.ffn)
    name = f"lit_ffn {variant}"
    if loss_chunk_size is not None:
        name += f" (loss chunk {loss_chunk_size})" if loss_chunk_size else " (plain loss)"
    runner = Runner(
        name=name, impl="lit_ffn", ffn=variant, module=lit, settings=settings,
        loss_fn=lambda tokens, targets: lit(tokens, targets), optimizer=fit_optimizer(lit, settings),
        num_params=lit.model.num_parameters(), flops_per_token=flops_per_token(lit.model, settings.seq_len),
    )
    runner.initial_weights = initial
    return runner


def fit_optimizer(lit: Any, settings: Settings) -> torch.optim.Optimizer:
    """The optimizer ``lit_ffn fit`` would use: ``LitDecoder.configure_optimizers()`` with a stand-in for the
    Trainer (it only reads the schedule length)."""
    from types import SimpleNamespace

    lit._trainer = SimpleNamespace(max_steps=settings.warmup + settings.steps, estimated_stepping_batches=None)
    try:
        configured = lit.configure_optimizers()
    finally:
        lit._trainer = None
    return configured["optimizer"] if isinstance(configured, dict) else configured


def hf_runner(reference: Runner, settings: Settings) -> Runner:
    """transformers' Qwen3ForCausalLM with the shape and the weights of ``reference`` (a lit_ffn SwiGLU runner)."""
    try:
        import transformers
    except ImportError:
        raise UserError("--compare-hf needs transformers: pip install transformers (or lit_ffn[dev])") from None
    lit = reference.module
    decoder, hp = lit.model, lit.hparams
    config = transformers.Qwen3Config(
        vocab_size=hp.vocab_size, hidden_size=hp.dim, intermediate_size=decoder.layers[0].ffn.hidden_dim,
        num_hidden_layers=hp.n_layers, num_attention_heads=hp.n_heads, num_key_value_heads=hp.n_kv_heads,
        head_dim=hp.head_dim, rope_theta=hp.rope_theta, rms_norm_eps=hp.norm_eps,
        tie_word_embeddings=hp.tie_embeddings, attention_bias=False, initializer_range=hp.init_std,
        max_position_embeddings=max(settings.seq_len, 128), use_cache=False,
    )
    config._attn_implementation = "sdpa"
    hf = transformers.Qwen3ForCausalLM(config)
    missing, unexpected = hf.load_state_dict(reference.initial_weights, strict=False)
    reference.initial_weights = None
    if unexpected or set(missing) - ({"lm_head.weight"} if hp.tie_embeddings else set()):
        raise RuntimeError(f"lit_ffn → transformers weight copy: missing {missing}, unexpected {unexpected}")
    if hp.tie_embeddings:
        hf.tie_weights()
    hf = _prepare_module(hf, settings)
    if settings.compile:  # the same per-block compile as lit_ffn's
        for layer in hf.model.layers:
            layer.compile()

    def loss_fn(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # targets are already shifted: shift_labels= tells transformers' ForCausalLMLoss not to shift again
        return hf(input_ids=tokens, labels=targets, shift_labels=targets).loss

    # the same AdamW (hyperparameters, fused or not, decay only on matrices) as lit_ffn's
    decay = [p for p in hf.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in hf.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    defaults = reference.optimizer.defaults
    optimizer = torch.optim.AdamW(groups, **{k: defaults[k] for k in ("betas", "eps", "fused", "foreach")},
                                  lr=reference.optimizer.param_groups[0]["lr"])  # the schedule's current lr
    return Runner(
        name="transformers Qwen3ForCausalLM", impl="transformers", ffn="SwiGLU", module=hf, settings=settings,
        loss_fn=loss_fn, optimizer=optimizer,
        num_params=sum(p.numel() for p in hf.parameters()), flops_per_token=reference.flops_per_token,
    )


def hf_state_dict(decoder: Any, clone: bool = False) -> dict[str, torch.Tensor]:
    """lit_ffn Decoder weights under transformers' Qwen3 names (the inverse of tests/test_model_parity.py's map)."""
    renames = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
               "lm_head.weight": "lm_head.weight"}
    parts = {"attn.": "self_attn.", "attn_norm.": "input_layernorm.", "ffn_norm.": "post_attention_layernorm.",
             "ffn.": "mlp."}
    out = {}
    for name, tensor in decoder.state_dict().items():
        tensor = tensor.detach().clone() if clone else tensor
        if name.startswith("layers."):
            index, _, rest = name.removeprefix("layers.").partition(".")
            for old, new in parts.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[f"model.layers.{index}.{rest}"] = tensor
        else:
            out[renames[name]] = tensor
    return out


# ------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MemoryMeter:
    """Peak memory above a baseline: CUDA allocator statistics, or the CPU process's peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_ok = device.type == "cpu" and Path("/proc/self/clear_refs").exists()
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated() minus the allocation before the model was built"
        elif self.cpu_ok:
            self.method = ("peak RSS of the process (VmHWM, reset via /proc/self/clear_refs) minus the RSS "
                           "before the model was built")
        else:
            self.method = "not available on this platform"
        self.baseline = 0

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def start(self) -> None:
        from lit_ffn.loss import release_workspace

        release_workspace()  # the loss's CPU scratch buffer is counted for the model that (re)allocates it
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        elif self.cpu_ok:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:
                self.cpu_ok, self.method = False, "not available (cannot reset /proc/self/clear_refs)"
            self.baseline = self._status("VmRSS")

    def peak(self) -> Optional[int]:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        if self.cpu_ok:
            return self._status("VmHWM") - self.baseline
        return None


def measured_gemm_flops(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """FLOP/s of an n³ matmul in ``dtype`` on ``device`` (best of 3)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def peak_flops(device: torch.device, precision: str, override_tflops: Optional[float]) -> tuple[Optional[float], str]:
    """(peak FLOP/s, where the number comes from) for MFU."""
    dtype = torch.float32 if precision == "32-true" else torch.bfloat16
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        key: Any = dtype
        if dtype is torch.float32 and torch.get_float32_matmul_precision() != "highest":
            key = "tfloat32"
        for chip, table in DENSE_PEAK_FLOPS.items():
            if all(part in name for part in chip.split()) or (chip == "h100 sxm" and "h100" in name and "hbm3" in name):
                return table[key], f"NVIDIA datasheet, dense {key} ({chip.upper()})"
        from lightning.fabric.utilities.throughput import get_available_flops

        flops = get_available_flops(device, dtype)
        return (float(flops), f"Lightning's table ({dtype})") if flops else (None, "unknown GPU: pass --peak-tflops")
    flops = measured_gemm_flops(device, dtype)
    return flops, f"measured 2048^3 {str(dtype).removeprefix('torch.')} matmul on this CPU, now ({flops / 1e9:.0f} GFLOP/s)"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def run_benchmark(runner_factories: list[Callable[[], Runner]], settings: Settings,
                  log: Callable[[str], None] = lambda _: None) -> list[Runner]:
    """Build each model and warm it up (measuring its memory), then time all of them interleaved."""
    device = settings.device
    generator = torch.Generator().manual_seed(settings.seed)
    meter = MemoryMeter(device)
    runners: list[Runner] = []
    blocks = torch.randint(0, settings.vocab_size, (settings.warmup + settings.steps, settings.batch_size,
                                                     settings.seq_len + 1), generator=generator)
    # the same data for every model
    batches = [(block[:, :-1].contiguous().to(device), block[:, 1:].contiguous().to(device)) for block in blocks]
    for factory in runner_factories:
        meter.start()
        runner = factory()
        runners.append(runner)
        log(f"warming up {runner.name} ({settings.warmup} steps)")
        try:
            for i in range(settings.warmup):
                runner.losses.append(float(runner.step(*batches[i])))
            _sync(device)
        except torch.OutOfMemoryError:  # reported as such: a sweep over --batch-size finds the largest that fits
            runner.error = "out of memory"
            runner.release()
            log(f"{runner.name}: out of memory")
            continue
        runner.peak_mem = meter.peak()
    timed = [runner for runner in runners if runner.error is None]
    if len(timed) > 1:  # one untimed step each: buffers shared across models (the loss's CPU workspace) settle
        for runner in timed:
            runner.step(*batches[settings.warmup - 1])
    log(f"timing {settings.steps} steps of {len(timed)} model(s), interleaved")
    for i in range(settings.warmup, settings.warmup + settings.steps):
        for runner in timed:
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            loss = runner.step(*batches[i])
            _sync(device)
            runner.times.append(time.perf_counter() - start)
            runner.cpu_times.append(time.process_time() - cpu_start)
            runner.losses.append(float(loss))  # after the clock stops: reading the loss syncs
    return runners


# -------------------------------------------------------------------- report
def _versions() -> dict[str, Optional[str]]:
    import importlib.metadata as md

    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    for package in ("torch", "lightning", "transformers"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    return out


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"


def build_report(runners: list[Runner], settings: Settings, peak: Optional[float], peak_source: str,
                 mem_method: str, argv: list[str], load_before: Optional[tuple[float, ...]]) -> dict[str, Any]:
    tokens_per_step = settings.batch_size * settings.seq_len
    results = []
    for r in runners:
        if r.error is not None:
            results.append({"name": r.name, "impl": r.impl, "ffn": r.ffn, "params": r.num_params, "error": r.error,
                            "tokens_per_step": tokens_per_step, "timed_steps": 0, "tokens_timed": 0})
            continue
        median = statistics.median(r.times)
        tokens_per_s = tokens_per_step / median
        results.append({
            "name": r.name, "impl": r.impl, "ffn": r.ffn, "params": r.num_params,
            "loss_chunk_size": r.loss_chunk_size,
            "flops_per_token": r.flops_per_token, "tokens_per_step": tokens_per_step,
            "timed_steps": len(r.times), "tokens_timed": tokens_per_step * len(r.times),
            "step_time_s": {"median": median, "min": min(r.times), "max": max(r.times),
                            "p25": _percentile(r.times, 0.25), "p75": _percentile(r.times, 0.75)},
            "tokens_per_s": tokens_per_s,
            "cpu_time_s_median": statistics.median(r.cpu_times),
            "achieved_tflops": tokens_per_s * r.flops_per_token / 1e12,
            "mfu": tokens_per_s * r.flops_per_token / peak if peak else None,
            "peak_mem_bytes": r.peak_mem,
            "optimizer": f"{type(r.optimizer).__name__}(fused={bool(r.optimizer.defaults.get('fused'))})",
            "first_loss": r.losses[0] if r.losses else None, "last_loss": r.losses[-1] if r.losses else None,
        })
    ratios = []
    hf = next((res for res in results if res["impl"] == "transformers" and "error" not in res), None)
    if hf is not None:
        for res in results:
            if res["impl"] == "lit_ffn" and res["ffn"] == "SwiGLU" and "error" not in res:
                ratios.append({"lit_ffn": res["name"], "transformers": hf["name"],
                               "tokens_per_s_ratio": res["tokens_per_s"] / hf["tokens_per_s"]})
    return {
        "command": "lit_ffn bench " + shlex.join(argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_description(settings.device), "versions": _versions(),
        "load_average_before": list(load_before) if load_before else None,
        "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "precision": settings.precision, "batch_size": settings.batch_size, "seq_len": settings.seq_len,
        "warmup_steps": settings.warmup, "timed_steps": settings.steps, "compile": settings.compile,
        "gradient_clip_val": settings.grad_clip,
        "flop_formula": FLOP_FORMULA, "peak_flops": peak, "peak_flops_source": peak_source,
        "memory_method": mem_method, "results": results, "ratios": ratios,
    }


def _gib(n: Optional[int]) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def render_markdown(report: dict[str, Any]) -> str:
    load = report["load_average_before"]
    lines = [
        f"`{report['command']}`",
        "",
        f"{report['device']}; torch {report['versions']['torch']}, lightning {report['versions']['lightning']}, "
        f"transformers {report['versions']['transformers']}; {report['precision']}, batch {report['batch_size']} × "
        f"{report['seq_len']} tokens, compile {'on' if report['compile'] else 'off'}, {report['warmup_steps']} warm-up + "
        f"{report['timed_steps']} timed steps (interleaved); load average before "
        f"{'/'.join(f'{x:.1f}' for x in load) if load else 'n/a'}.",
        "",
        "| model | params | step time median (min–max) | CPU time/step | tokens/s | MFU | peak memory "
        "| first → last loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in report["results"]:
        if "error" in res:
            lines.append(f"| {res['name']} | {res['params'] / 1e6:.2f}M | {res['error']} | | | | | |")
            continue
        st = res["step_time_s"]
        mfu = "n/a" if res["mfu"] is None else f"{100 * res['mfu']:.1f}%"
        lines.append(
            f"| {res['name']} | {res['params'] / 1e6:.2f}M | {st['median']:.3f} s ({st['min']:.3f}–{st['max']:.3f}) "
            f"| {res['cpu_time_s_median']:.2f} s | {res['tokens_per_s']:,.0f} | {mfu} | {_gib(res['peak_mem_bytes'])} "
            f"| {res['first_loss']:.4f} → {res['last_loss']:.4f} |"
        )
    for ratio in report["ratios"]:
        lines.append("")
        lines.append(f"{ratio['lit_ffn']} / {ratio['transformers']}: **{ratio['tokens_per_s_ratio']:.2f}×** tokens/s")
    lines += ["", f"MFU: {report['flop_formula']}; peak: {report['peak_flops_source']}.",
              f"Peak memory: {report['memory_method']}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit_ffn bench", description="Time training steps of lit_ffn (and transformers' Qwen3) on this device.")
    parser.add_argument("--config", action="append", required=True, metavar="X.yaml",
                        help="a lit_ffn config (repeatable, later files win, as for lit_ffn fit)")
    parser.add_argument("--ffn", nargs="+", metavar="NAME",
                        help="FFN variant(s): built-in names (swiglu, geglu, dynamic_geglu, …), configs/ffn/*.yaml "
                             "files or class paths (default: the config's)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    parser.add_argument("--compare-hf", action="store_true", help="also time transformers' Qwen3ForCausalLM")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON")
    parser.add_argument("--markdown", metavar="OUT", help="write the report as a Markdown table")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: the config's trainer.precision")
    parser.add_argument("--batch-size", type=int, help="default: the config's data.batch_size")
    parser.add_argument("--seq-len", type=int, help="default: the config's data.seq_len")
    parser.add_argument("--compile", action="store_true", help="torch.compile every decoder block (both models)")
    parser.add_argument("--loss-chunk-size", type=int, nargs="+", metavar="N",
                        help="override model.loss_chunk_size; several values: one model per value (0: plain loss)")
    parser.add_argument("--peak-tflops", type=float, help="peak TFLOP/s of the device for MFU")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _precision(value: Any) -> str:
    text = str(value) if value is not None else "32-true"
    aliases = {"32": "32-true", "bf16": "bf16-mixed"}
    text = aliases.get(text, text)
    if text not in PRECISIONS:
        raise UserError(f"precision {text!r} is not benchmarked: use one of {', '.join(PRECISIONS)}")
    return text


def settings_from(args: argparse.Namespace, merged: dict[str, Any], cfg: Any) -> Settings:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    trainer, data = merged.get("trainer") or {}, merged.get("data") or {}
    batch_size = args.batch_size or data.get("batch_size")
    seq_len = args.seq_len or data.get("seq_len")
    if not batch_size or not seq_len:
        raise UserError("no batch size / sequence length: give --batch-size and --seq-len or data.batch_size / data.seq_len")
    for name, value in (("--steps", args.steps), ("--batch-size", batch_size), ("--seq-len", seq_len)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    if args.warmup < 1:
        raise UserError(f"--warmup must be at least 1 (memory is measured over the warm-up), got {args.warmup}")
    for value in args.loss_chunk_size or []:
        if value < 0:
            raise UserError(f"--loss-chunk-size must be >= 0 (0: plain loss), got {value}")
    return Settings(
        device=device, precision=_precision(args.precision or trainer.get("precision")),
        batch_size=int(batch_size), seq_len=int(seq_len), steps=args.steps, warmup=args.warmup,
        compile=args.compile or bool(getattr(cfg.model, "compile", False)), grad_clip=trainer.get("gradient_clip_val"), vocab_size=int(cfg.model.vocab_size),
        seed=args.seed,
    )


def check_output_path(path: Optional[str], flag: str) -> None:
    """Make sure ``path`` can be written before minutes of benchmarking: create
    its parent directories; a directory or an unwritable place is a UserError."""
    if not path:
        return
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{flag} {path}: is a directory; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create the directory {out.parent} ({err.strerror or err})") from None
    if not os.access(out if out.exists() else out.parent, os.W_OK):
        raise UserError(f"{flag} {path}: not writable")


def bench(argv: list[str], log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> dict[str, Any]:
    """Run ``lit_ffn bench`` with ``argv``; return the report (also written where asked)."""
    args = build_parser().parse_args(argv)
    check_output_path(args.json, "--json")
    check_output_path(args.markdown, "--markdown")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    cfg, merged = load_config(args.config)
    settings = settings_from(args, merged, cfg)
    ffns: list[Optional[dict[str, Any]]] = [ffn_section(name) for name in args.ffn] if args.ffn else [None]
    if args.compare_hf and not any(_ffn_class(f, cfg) == "lit_ffn.ffn.SwiGLU" for f in ffns):
        ffns.append({"class_path": "lit_ffn.ffn.SwiGLU"})  # the model transformers' Qwen3 is compared with
    built: list[Runner] = []

    def lit(ffn: Optional[dict[str, Any]], chunk: Optional[int]) -> Runner:
        keep = args.compare_hf and _ffn_class(ffn, cfg) == "lit_ffn.ffn.SwiGLU" and not built_swiglu(built)
        built.append(lit_runner(cfg, ffn, settings, loss_chunk_size=chunk, keep_initial_weights=keep))
        return built[-1]

    chunks: list[Optional[int]] = list(args.loss_chunk_size or [None])
    factories: list[Callable[[], Runner]] = [lambda ffn=ffn, chunk=chunk: lit(ffn, chunk) for ffn in ffns for chunk in chunks]
    if args.compare_hf:
        factories.append(lambda: hf_runner(next(r for r in built if r.initial_weights is not None), settings))
    runners = run_benchmark(factories, settings, log)
    peak, peak_source = peak_flops(settings.device, settings.precision, args.peak_tflops)
    report = build_report(runners, settings, peak, peak_source, MemoryMeter(settings.device).method, argv, load_before)
    markdown = render_markdown(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    print(markdown)
    return report


def built_swiglu(runners: list[Runner]) -> bool:
    return any(r.initial_weights is not None for r in runners)


def _ffn_class(ffn: Optional[dict[str, Any]], cfg: Any) -> str:
    return ffn["class_path"] if ffn is not None else cfg.model.ffn.class_path


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``lit_ffn bench``; user errors print one line and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        bench(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return int(exit_.code or 0)
    except UserError as err:
        print(f"lit_ffn bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0
