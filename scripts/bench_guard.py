#!/usr/bin/env python
"""Cost of the non-finite guard per optimizer step: none vs per-micro-batch sync (lit_ffn <= 4cee13f) vs
one check per optimizer step (lit_ffn.training.guards.NonFiniteGuard today).

    python scripts/bench_guard.py                       # CPU
    python scripts/bench_guard.py --device cuda         # where a host-device sync costs something

A small MLP language-model-like step (forward, backward, AdamW) with ``--accumulate`` micro-batches per
optimizer step; the three variants are interleaved round-robin, ``--steps`` timed steps each after
``--warmup``.  Prints the median ms per optimizer step of each variant.  On a CPU a "sync" is free, so
the three agree within noise; on a GPU the per-micro-batch ``.item()`` stalls the launch queue.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from lit_ffn.training.guards import NonFiniteGuard


def old_style_check(loss: torch.Tensor) -> bool:
    """What lit_ffn <= 4cee13f did on every micro-batch: an isfinite and a device-to-host read."""
    return bool((~torch.isfinite(loss.detach())).any().float().item() > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--accumulate", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(args.dim, 4 * args.dim), torch.nn.GELU(), torch.nn.Linear(4 * args.dim, args.dim)
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch, args.dim, device=device)
    trainer = SimpleNamespace(
        world_size=1, global_step=0, strategy=SimpleNamespace(root_device=device), precision_plugin=None
    )
    module = SimpleNamespace(trainer=trainer, log=lambda *a, **k: None)
    guard = NonFiniteGuard("raise")

    def step(variant: str) -> None:
        for _ in range(args.accumulate):
            loss = model(x).pow(2).mean()
            if variant == "per micro-batch":
                old_style_check(loss)
            elif variant == "per step":
                guard.record_loss(loss)
            loss.backward()
        if variant == "per micro-batch":
            grads = [p.grad for p in model.parameters()]
            bool((~torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=float("inf")))).item())
        elif variant == "per step":
            guard.before_optimizer_step(optimizer, module)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    variants = ["none", "per micro-batch", "per step"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.warmup + args.steps):
        for variant in variants:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step(variant)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= args.warmup:
                times[variant].append(time.perf_counter() - start)
    print(f"device {device}, dim {args.dim}, batch {args.batch}, accumulate {args.accumulate}, {args.steps} steps")
    for variant in variants:
        print(f"  guard {variant:16s} {1e3 * statistics.median(times[variant]):8.2f} ms / optimizer step")


if __name__ == "__main__":
    main()
