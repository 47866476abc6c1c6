"""Write configs/ladder/cpu/*.yaml: the CPU scaling ladder and the header each rung carries.

    python scripts/write_cpu_ladder.py            # rewrites the rung files from RUNGS and the rule below

The rule (issue 22 part 4): every rung trains TOKENS_PER_PARAMETER tokens per non-embedding parameter
(rounded up to a whole step of 16 × 256 tokens), warms up for 5% of its steps, decays by cosine to
0.1 × lr, and validates once, at max_steps, on the whole validation split.  Every rung runs on the
quickstart corpus with a 1,024-token byte-level BPE (``data/quickstart-bpe1024``, built on first use),
where the head is 17–65% of the FLOPs instead of 57–88% at 4,096 ids: the FFN is a real share of the
compute.  The numbers in each header (parameters, steps, tokens, FLOPs per token and their FFN /
attention / head shares) are computed here from the composed config, and tests/experiments/test_ladder.py
checks them against the files.
"""

from __future__ import annotations

import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "configs/quickstart.yaml"
OUT = ROOT / "configs" / "ladder" / "cpu"
TOKENS_PER_PARAMETER = 40
VOCAB = 1024
DATA_DIR = "data/quickstart-bpe1024"
TOKENS_PER_STEP = 16 * 256
WARMUP_FRACTION = 0.05
SEQ_LEN = 256
#: name: (dim, n_layers, n_heads, n_kv_heads, head_dim)
RUNGS = {
    "d032l1": (32, 1, 2, 1, 16),
    "d048l2": (48, 2, 2, 1, 24),
    "d064l2": (64, 2, 2, 1, 32),
    "d064l3": (64, 3, 2, 1, 32),
}

HEADER = """\
# CPU scaling-ladder rung {name}: layered over configs/quickstart.yaml (written by scripts/write_cpu_ladder.py).
#
#   lit_ffn ablate --config configs/quickstart.yaml --ffn swiglu relu dynamic_geglu \\
#       --ladder configs/ladder/cpu/*.yaml --seeds 0 1 2 --out runs/ladder_cpu
#
# Token budget rule (every rung of configs/ladder/cpu/): {k} tokens per non-embedding parameter
# (2x Chinchilla's 20, Hoffmann et al. 2022: the small rungs need the steps to get past token
# frequencies), max_steps = ceil({k} * N_non-embedding / 4,096) at 4,096 tokens per step (16 x 256).
# Warm-up 5% of the steps, then cosine to 0.1 x lr (model.min_lr_ratio); validation on the whole
# validation split (data.val_blocks: null) at step 0 and at max_steps. Data: the quickstart corpus on a
# {vocab:,}-token byte-level BPE of its training split ({data_dir}, built on first use).
# This rung: {total:,} parameters ({non_embedding:,} non-embedding), {steps} steps = {tokens:,} tokens
# ({ratio:.1f} per non-embedding parameter), {fpt:.2f} MFLOP per token (lit_ffn.flops.flops_per_token,
# T = 256) -> C = {compute:.3e} FLOPs; FLOP shares: FFN {ffn:.0%}, attention {attention:.0%}, head {head:.0%}.
trainer:
  max_steps: {steps}
  val_check_interval: {steps}   # validation at the end only (and at step 0): the final val/loss lands on max_steps
checkpoint:
  every_n_train_steps: {steps}
model:
  vocab_size: {vocab}
  dim: {dim}
  n_layers: {n_layers}
  n_heads: {n_heads}
  n_kv_heads: {n_kv_heads}
  head_dim: {head_dim}
  warmup_steps: {warmup}
data:
  data_dir: {data_dir}
  val_blocks: null
"""


def rung_text(name: str, shape: tuple[int, int, int, int, int]) -> str:
    from lit_ffn.experiments.params import count_parameters
    from lit_ffn.flops import flop_shares, flops_per_token
    from lit_ffn.training.config import FitConfigParser, build_module

    dim, n_layers, n_heads, n_kv_heads, head_dim = shape
    shape_args = [f"--model.{k}={v}" for k, v in zip(("dim", "n_layers", "n_heads", "n_kv_heads", "head_dim"), shape)]
    config = FitConfigParser().parse(["--config", str(ROOT / BASE), f"--model.vocab_size={VOCAB}", *shape_args])
    counts = count_parameters(config.model)
    decoder = build_module(config.model).model
    fpt, shares = flops_per_token(decoder, SEQ_LEN), flop_shares(decoder, SEQ_LEN)
    steps = math.ceil(TOKENS_PER_PARAMETER * counts.non_embedding / TOKENS_PER_STEP)
    tokens = steps * TOKENS_PER_STEP
    return HEADER.format(
        name=name, k=TOKENS_PER_PARAMETER, vocab=VOCAB, data_dir=DATA_DIR, total=counts.total,
        non_embedding=counts.non_embedding, steps=steps, tokens=tokens, ratio=tokens / counts.non_embedding,
        fpt=fpt / 1e6, compute=fpt * tokens, ffn=shares["ffn"], attention=shares["attention"], head=shares["head"],
        dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
        warmup=max(1, round(WARMUP_FRACTION * steps)),
    )  # fmt: skip


def main() -> None:
    for old in OUT.glob("*.yaml"):
        old.unlink()
    for name, shape in RUNGS.items():
        (OUT / f"{name}.yaml").write_text(rung_text(name, shape))
        print(f"wrote {OUT / name}.yaml")


if __name__ == "__main__":
    main()
