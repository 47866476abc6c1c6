"""``lit_ffn bench --profile``: where a training step's time goes, grouped by what the model computes.

``PROFILE_STEPS`` steps (forward with loss, backward, clipping, AdamW, ``zero_grad``) of each benchmarked model runs
under ``torch.profiler`` (CPU activities). Its operators' *self* CPU times are summed per group:

* forward: each operator goes to the innermost annotated region it runs in. Regions are
  ``torch.profiler.record_function`` ranges opened by forward hooks on the model's modules, chosen by
  the module's attribute name (``ffn``/``mlp`` → FFN, ``attn``/``self_attn`` → attention, any ``*Norm``
  class or ``rope``/``rotary_emb`` → norms+rope; each decoder block's own glue — residual adds — →
  other), by wrapping the three libraries' RoPE functions (``lit_ffn.model.apply_rotary``,
  transformers' ``apply_rotary_pos_emb``, litgpt's ``apply_rope``) → norms+rope, and the whole
  forward call → head+loss (so the embedding lookup, the final projection and the loss land there);
* backward: each ``autograd::engine::evaluate_function`` goes to the group of the forward operator
  that created its autograd node (the profiler's ``sequence_nr`` links them); nodes with no forward
  operator (``AccumulateGrad``) → other;
* ``clip_grad_norm_``, ``optimizer.step()`` and ``zero_grad`` → optimizer.

The shares are of the summed self CPU time of every recorded operator and range (Python time inside a
range counts to that range), so they add up to 1 by construction. The profiler's times are elapsed
times between an operator's start and end on its thread: on a shared CPU they include time the
thread waited for a core.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from lit_ffn.bench.report import peer_pairs
from lit_ffn.bench.runners import Runner

PROFILE_STEPS = 3
GROUPS = ("FFN", "attention", "head+loss", "norms+rope", "optimizer", "other")
_PREFIX = "lit_ffn.bench::"
#: (module, function) of each library's RoPE application: a function, not a module, in all three
ROPE_FUNCTIONS = (
    ("lit_ffn.model", "apply_rotary"),
    ("transformers.models.qwen3.modeling_qwen3", "apply_rotary_pos_emb"),
    ("litgpt.model", "apply_rope"),
)


def module_group(name: str, module: nn.Module, parent: nn.Module | None) -> str | None:
    """The group a module's forward is annotated with (None: not annotated; its ops go to the enclosing one)."""
    last = name.rsplit(".", 1)[-1]
    if last in ("ffn", "mlp"):
        return "FFN"
    if last in ("attn", "self_attn"):
        return "attention"
    if "Norm" in type(module).__name__ or last in ("rope", "rotary_emb"):
        return "norms+rope"
    if isinstance(parent, nn.ModuleList) and name.rsplit(".", 2)[-2:-1] in (["layers"], ["h"]):
        return "other"  # a decoder block: what is not in its FFN, attention or norms (residual adds)
    return None


@contextlib.contextmanager
def _annotated(model: nn.Module) -> Iterator[None]:
    """Forward hooks that open/close a ``record_function`` range per grouped module, and RoPE wrappers."""
    handles, patched = [], []
    parents = {child: parent for parent in model.modules() for child in parent.children()}
    for name, module in model.named_modules():
        group = module_group(name, module, parents.get(module))
        if group is None:
            continue

        def pre(_mod: nn.Module, _args: Any, group: str = group) -> None:
            ctx = record_function(_PREFIX + group)
            ctx.__enter__()
            _mod._lit_ffn_profile_ranges = [*getattr(_mod, "_lit_ffn_profile_ranges", []), ctx]

        def post(_mod: nn.Module, _args: Any, _out: Any) -> None:
            _mod._lit_ffn_profile_ranges.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    for module_name, function_name in ROPE_FUNCTIONS:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        original = getattr(owner, function_name)

        @functools.wraps(original)
        def wrapped(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with record_function(_PREFIX + "norms+rope"):
                return _original(*args, **kwargs)

        setattr(owner, function_name, wrapped)
        patched.append((owner, function_name, original))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for owner, function_name, original in patched:
            setattr(owner, function_name, original)


def _region(event: Any) -> str | None:
    """The innermost annotated group above (or at) ``event``."""
    while event is not None:
        if event.name.startswith(_PREFIX):
            return event.name.removeprefix(_PREFIX)
        event = event.cpu_parent
    return None


def group_times(events: list[Any]) -> dict[str, float]:
    """Self CPU time (µs) per group of a profiled step's events (see the module docstring)."""
    forward_group: dict[int, str] = {}
    for event in sorted(events, key=lambda e: e.time_range.start):
        region = _region(event)  # None: a backward op (they record their node's number too)
        if event.sequence_nr >= 0 and region is not None:
            # every forward op records the number the *next* autograd node will get; the last op (in
            # start order) to record it is the one that created the node
            forward_group[event.sequence_nr] = region
    times = dict.fromkeys(GROUPS, 0.0)
    for event in events:
        group, node = _region(event), event
        if group is None:  # backward: find the evaluate_function this op runs in
            while node is not None and not node.name.startswith("autograd::engine::evaluate_function"):
                node = node.cpu_parent
            group = forward_group.get(node.sequence_nr, "other") if node is not None else "other"
        times[group if group in times else "other"] += event.self_cpu_time_total
    return times


def profile_steps(runner: Runner, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Shares per group (summing to 1) of ``len(batches)`` training steps of ``runner`` profiled together,
    and ``total_cpu_ms`` per step (several steps: on a shared CPU one step's split is noisy)."""
    settings = runner.settings
    bf16 = settings.precision == "bf16-mixed"
    with _annotated(runner.module), profile(activities=[ProfilerActivity.CPU]) as prof:
        for tokens, targets in batches:
            with record_function(_PREFIX + "head+loss"), torch.autocast(settings.device.type, torch.bfloat16, bf16):
                loss = runner.loss_fn(tokens, targets)
            loss.backward()
            with record_function(_PREFIX + "optimizer"):
                if settings.grad_clip:
                    torch.nn.utils.clip_grad_norm_(runner.params, settings.grad_clip)
                runner.optimizer.step()
                runner.optimizer.zero_grad(set_to_none=True)
    times = group_times(list(prof.events()))
    total = sum(times.values())
    return {**{group: t / total for group, t in times.items()}, "total_cpu_ms": total / 1e3 / len(batches)}


def loss_free_bounds(results: list[dict[str, Any]], profile_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How fast lit_ffn could be against each peer if its head+loss took no time at all (Amdahl's law).

    For a lit_ffn SwiGLU row with median step time t and profiled head+loss share s, and a peer with
    median step time t_p, the bound is ``t_p / (t · (1 − s))``: no implementation of the LM head and the
    loss can make lit_ffn faster than that against this peer while the rest of the step (FFN, attention,
    norms, optimizer: the same ATen kernels in all three libraries) stays as it is. ``results`` and
    ``profile_rows`` are the report's ``results`` and ``profile`` lists."""
    shares = {row["name"]: row["shares"]["head+loss"] for row in profile_rows}
    bounds = []
    for res, peer in peer_pairs(results):
        if res["name"] not in shares or peer["name"] not in shares:
            continue
        rest = res["step_time_s"]["median"] * (1.0 - shares[res["name"]])
        bounds.append(
            {
                "lit_ffn": res["name"],
                "peer": peer["name"],
                "head_loss_share": shares[res["name"]],
                "step_time_without_head_loss_s": rest,
                "tokens_per_s_ratio_bound": peer["step_time_s"]["median"] / rest,
            }
        )
    return bounds


def render_bounds(bounds: list[dict[str, Any]]) -> str:
    """One line per (lit_ffn, peer) pair of :func:`loss_free_bounds`."""
    lines = [
        f"- {b['lit_ffn']} / {b['peer']}: at most **{b['tokens_per_s_ratio_bound']:.2f}×** if lit_ffn's head+loss "
        f"({100 * b['head_loss_share']:.1f}% of its step) took no time ({1e3 * b['step_time_without_head_loss_s']:.1f} "
        "ms per step left)"
        for b in bounds
    ]
    return "\n".join(lines) + ("\n" if lines else "")


def render_profile(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A Markdown table: one row per model, one column per group (share of the step's CPU time)."""
    lines = [
        "| model | " + " | ".join(GROUPS) + " | profiled time per step |",
        "|---|" + "---|" * (len(GROUPS) + 1),
    ]
    for name, shares in rows:
        cells = " | ".join(f"{100 * shares[g]:.1f}%" for g in GROUPS)
        lines.append(f"| {name} | {cells} | {shares['total_cpu_ms']:.0f} ms |")
    return "\n".join(lines) + "\n"


__all__ = [
    "GROUPS",
    "PROFILE_STEPS",
    "group_times",
    "loss_free_bounds",
    "module_group",
    "profile_steps",
    "render_bounds",
    "render_profile",
]
