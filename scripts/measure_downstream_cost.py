"""Cost of one ``DownstreamEval`` call at the quickstart shape, offline (README, "Scoring tasks during training").

A 4-choice task built from ``pydoc_data`` sentences (question: 30 words, gold: the next word, 3 random
distractors) is scored by a freshly initialised quickstart-shaped decoder (20M parameters, Qwen3's
151,936-token vocabulary, fp32, context 256) — the cost does not depend on the weights.  Each ``--limit``
is timed twice.

    python scripts/measure_downstream_cost.py --limit 20 100
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from pydoc_data.topics import topics
from types import SimpleNamespace

import torch
import yaml

from lit_ffn.callbacks.downstream import DownstreamEval
from lit_ffn.data.tokenizer import load_tokenizer
from lit_ffn.ffn import SwiGLU
from lit_ffn.inference.evaluate import quiet_lm_eval, task_manager
from lit_ffn.model import Decoder


def write_task(directory: Path, n_docs: int = 200) -> None:
    rng = random.Random(0)
    words = " ".join(topics[key] for key in sorted(topics)).split()
    docs = []
    for _ in range(n_docs):
        start = rng.randrange(0, len(words) - 40)
        choices = [words[start + 30]] + [words[rng.randrange(len(words))] for _ in range(3)]
        docs.append({"question": " ".join(words[start : start + 30]), "choices": choices, "label": 0})
    data = directory / "pd_choice.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    metrics = [{"metric": name, "aggregation": "mean", "higher_is_better": True} for name in ("acc", "acc_norm")]
    spec = {
        "task": "pd_choice", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_target": "{{label}}", "doc_to_choice": "{{choices}}", "metric_list": metrics,
    }  # fmt: skip
    (directory / "pd_choice.yaml").write_text(yaml.safe_dump(spec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    quiet_lm_eval()
    torch.manual_seed(0)
    decoder = Decoder(ffn=SwiGLU, vocab_size=151_936, dim=128, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32)
    module = SimpleNamespace(
        trainer=SimpleNamespace(datamodule=SimpleNamespace(seq_len=256)), device=torch.device("cpu")
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_task(Path(tmp))
        for limit in args.limit:
            callback = DownstreamEval(["pd_choice"], limit=limit, include_path=tmp, batch_size=args.batch_size)
            callback._manager, callback._tokenizer = task_manager(["pd_choice"], tmp), load_tokenizer("qwen3")
            for repeat in range(2):
                start = time.perf_counter()
                record = callback._evaluate(decoder, module, 0)
                scores = record["scores"]["pd_choice"]
                print(
                    f"limit={limit} call {repeat}: {time.perf_counter() - start:.2f} s ({4 * limit} log-likelihood "
                    f"requests), acc {scores['acc']:.3f}, prob_correct {scores['prob_correct']:.3f}"
                )


if __name__ == "__main__":
    main()
