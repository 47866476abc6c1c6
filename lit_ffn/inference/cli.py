"""``lit_ffn generate``, ``lit_ffn evaluate`` and ``lit_ffn export``: argument parsing and printing only.

The work is done by :mod:`~lit_ffn.inference.loading`, :mod:`~lit_ffn.inference.generate`,
:mod:`~lit_ffn.inference.evaluate` and :mod:`~lit_ffn.inference.export`; every user mistake ends in
one line ``lit_ffn <tool>: error: …`` and exit code 2 (:func:`lit_ffn.errors.run_tool`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lit_ffn.errors import UserError, run_tool

CKPT_HELP = (
    "a checkpoint file (.ckpt), a sharded FSDP checkpoint directory, or a run directory "
    "(runs/<exp>/<variant>/seed_<s>: its checkpoints/last.ckpt)"
)
TOKENIZER_HELP = "tokenizer spec overriding the run's (qwen3, or a tokenizer.json); needed for a checkpoint outside its run directory"


def resolve_device(spec: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; a CUDA device that is not there is a UserError."""
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {spec}: this machine has no CUDA device; use --device cpu")
    try:
        torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device {spec}: not a torch device (cpu, cuda, cuda:1, mps, auto)") from None
    return spec


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(partial, path)


# ------------------------------------------------------------------ generate
def _prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompt_file is not None:
        try:
            text = sys.stdin.read() if args.prompt_file == "-" else Path(args.prompt_file).read_text(encoding="utf-8")
        except OSError as err:
            raise UserError(f"--prompt-file {args.prompt_file}: {err.strerror or err}") from None
        prompts += [line for line in text.splitlines() if line.strip()]
    if not prompts:
        raise UserError('no prompt: give --prompt TEXT (repeatable; "" starts a new document) or --prompt-file FILE')
    return prompts


def generate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lit_ffn generate",
        description="Continue prompts with a trained lit_ffn model (KV-cached decoding; any FFN).",
    )
    parser.add_argument("--ckpt", required=True, help=CKPT_HELP)
    parser.add_argument("--prompt", action="append", help='prompt text; repeat for several ("" starts a new document)')
    parser.add_argument("--prompt-file", help="a file with one prompt per non-empty line ('-': stdin)")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate per prompt (default 50)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy (default 0.8)")
    parser.add_argument(
        "--top-k", type=int, default=50, help="sample among the k most likely tokens (default 50; 0: all)"
    )
    parser.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling: keep tokens up to this cumulative probability"
    )
    parser.add_argument("--greedy", action="store_true", help="greedy decoding (same as --temperature 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    parser.add_argument("--tokenizer", help=TOKENIZER_HELP)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    parser.add_argument("--no-cache", action="store_true", help="re-run the whole sequence every step (no KV cache)")
    parser.add_argument(
        "--no-eos-prefix",
        action="store_true",
        help="do not put the EOS id before the prompt (by default a prompt starts a document, as after every EOS in training)",
    )

    def body() -> None:
        from lit_ffn.inference.generate import generate
        from lit_ffn.inference.loading import load_model
        from lit_ffn.inference.sampling import Sampling

        args = parser.parse_args(argv)
        if args.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
        temperature = 0.0 if args.greedy else args.temperature
        sampling = Sampling(temperature, args.top_k or None, args.top_p)
        prompts = _prompts(args)
        device = resolve_device(args.device)
        loaded = load_model(args.ckpt, tokenizer=args.tokenizer, device=device)
        tok = loaded.tokenizer
        assert tok is not None  # load_model loads it
        generator = torch.Generator(device=device).manual_seed(args.seed)
        total, start = 0, time.perf_counter()
        for index, prompt in enumerate(prompts):
            # training saw every document after an EOS: a prompt starts one (an empty prompt is just that EOS)
            ids = tok.encode(prompt) if args.no_eos_prefix else [tok.eos_id, *tok.encode(prompt)]
            if not ids:
                raise UserError("an empty --prompt needs the EOS prefix: drop --no-eos-prefix")
            if loaded.seq_len is not None and len(ids) + args.max_new_tokens > loaded.seq_len:
                print(
                    f"lit_ffn generate: note: {len(ids)} prompt + {args.max_new_tokens} new tokens exceed the "
                    f"{loaded.seq_len}-token context the model was trained on",
                    file=sys.stderr,
                )
            prompt_ids = torch.tensor([ids], dtype=torch.long, device=device)
            (new,) = generate(
                loaded.decoder,
                prompt_ids,
                args.max_new_tokens,
                sampling,
                eos_id=tok.eos_id,
                generator=generator,
                use_cache=not args.no_cache,
            )
            total += len(new)
            if index:
                print()
            print(prompt + tok.decode(new), flush=True)
        seconds = time.perf_counter() - start
        step = f", step {loaded.global_step}" if loaded.global_step is not None else ""
        print(
            f"lit_ffn generate: {total} new tokens in {seconds:.2f} s ({total / max(seconds, 1e-9):.0f} tokens/s, "
            f"{'no cache' if args.no_cache else 'KV cache'}, {device}) from {loaded.checkpoint}{step}",
            file=sys.stderr,
        )

    return run_tool("lit_ffn generate", body)


# ------------------------------------------------------------------ evaluate
def _limit(text: str) -> int | float:
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of documents or a fraction < 1, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def default_eval_path(run_dir: Path | None, tasks: list[str]) -> Path:
    """``<run>/eval/<task>+<task>….json`` (UserError for a checkpoint outside a run directory)."""
    if run_dir is None:
        raise UserError("the checkpoint is not inside a run directory: say where to write the results with --out FILE")
    name = "+".join(Path(task).stem if task.endswith((".yaml", ".yml")) else task for task in tasks)
    return run_dir / "eval" / f"{name[:150]}.json"


def evaluate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lit_ffn evaluate",
        description="Score a lit_ffn checkpoint on lm-evaluation-harness tasks (pip install -e '.[eval]').",
    )
    parser.add_argument("--ckpt", required=True, help=CKPT_HELP)
    parser.add_argument("--tasks", required=True, help="comma-separated lm_eval task/group names or task YAML paths")
    parser.add_argument("--include-path", help="a directory of your own task YAMLs (as lm_eval --include_path)")
    parser.add_argument("--limit", type=_limit, help="documents per task (or a fraction < 1); default: all")
    parser.add_argument("--batch-size", type=int, default=16, help="requests per forward pass (default 16)")
    parser.add_argument("--num-fewshot", type=int, help="few-shot examples (default: each task's own, mostly 0)")
    parser.add_argument(
        "--max-length", type=int, help="longest model input in tokens (default: the run's data.seq_len)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of few-shot/document sampling and sampled generation")
    parser.add_argument(
        "--bootstrap-iters", type=int, default=1000, help="bootstrap resamples for stderrs (default 1000)"
    )
    parser.add_argument("--tokenizer", help=TOKENIZER_HELP)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    parser.add_argument("--out", help="results JSON (default: <run>/eval/<tasks>.json)")

    def body() -> None:
        from lit_ffn.inference.evaluate import (
            evaluate_loaded,
            format_table,
            quiet_lm_eval,
            require_lm_eval,
            task_manager,
        )
        from lit_ffn.inference.loading import load_model

        args = parser.parse_args(argv)
        require_lm_eval()
        tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
        if not tasks:
            raise UserError("--tasks is empty: name at least one task, e.g. --tasks arc_easy,piqa")
        quiet_lm_eval()
        device = resolve_device(args.device)
        manager = task_manager(tasks, args.include_path)  # unknown tasks fail before the model is read
        loaded = load_model(args.ckpt, tokenizer=args.tokenizer, device=device)
        out = Path(args.out) if args.out else default_eval_path(loaded.run_dir, tasks)
        evaluation = evaluate_loaded(
            loaded,
            tasks,
            include_path=args.include_path,
            limit=args.limit,
            batch_size=args.batch_size,
            device=device,
            num_fewshot=args.num_fewshot,
            max_length=args.max_length,
            seed=args.seed,
            bootstrap_iters=args.bootstrap_iters,
            manager=manager,
        )
        from lit_ffn.ffn.registry import variant_name

        record = {
            "checkpoint": str(loaded.checkpoint),
            "run_dir": str(loaded.run_dir) if loaded.run_dir is not None else None,
            "global_step": loaded.global_step,
            "ffn": variant_name(loaded.model_config.get("ffn", {})),
            "scores": evaluation.scores,
            "settings": evaluation.settings,
            "task_versions": evaluation.raw.get("versions", {}),
            "n_samples": evaluation.raw.get("n-samples", {}),
        }
        _write_json_atomic(out, record)
        print(format_table(evaluation.scores))
        print(f"lit_ffn evaluate: wrote {out}", file=sys.stderr)

    return run_tool("lit_ffn evaluate", body)


# ------------------------------------------------------------------ export
def export_main(argv: list[str] | None = None) -> int:
    from lit_ffn.inference.export import DTYPES, FORMATS

    parser = argparse.ArgumentParser(
        prog="lit_ffn export",
        description="Write a lit_ffn checkpoint as a Hugging Face model directory: stock Qwen3ForCausalLM where "
        "its FFN allows (SwiGLU, GEGLU, ReGLU, GLU, Bilinear), else Qwen3 with the FFN shipped as remote code.",
    )
    parser.add_argument("--ckpt", required=True, help=CKPT_HELP)
    parser.add_argument(
        "--out", required=True, help="the directory to write (refused if it exists, unless --overwrite)"
    )
    parser.add_argument("--format", default="hf", choices=FORMATS, help="hf: a transformers model directory (default)")
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPES), help="weight dtype (default float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out (atomically)")
    parser.add_argument("--no-verify", action="store_true", help="skip reloading the export with transformers")
    parser.add_argument("--tokenizer", help=TOKENIZER_HELP)

    def body() -> None:
        from lit_ffn.inference.export import export_hf
        from lit_ffn.inference.loading import load_model

        args = parser.parse_args(argv)
        out = Path(args.out)
        if out.exists() and not args.overwrite:  # before the checkpoint is read
            raise UserError(f"{out} already exists: choose another --out, delete it, or pass --overwrite")
        loaded = load_model(args.ckpt, tokenizer=args.tokenizer, device="cpu")
        record = export_hf(loaded, out, overwrite=args.overwrite, dtype=args.dtype, verify=not args.no_verify)
        verified = record.get("verified", {})
        check = (
            f"transformers reproduces lit_ffn's logits to {verified['max_abs_logit_diff']:.2g}"
            if verified.get("checked")
            else f"not verified: {verified.get('reason', '--no-verify')}"
        )
        if "hidden_act" in record:
            kind, trust = f"{record['architecture']}, hidden_act={record['hidden_act']}", ""
        else:
            kind = f"{record['architecture']} with remote code for {record['remote_code']['ffn']}"
            trust = ", trust_remote_code=True"
        print(
            f"lit_ffn export: wrote {out} ({kind}, {loaded.decoder.num_parameters():,} parameters, {args.dtype}; "
            f"{check})\n"
            f"  load it: AutoModelForCausalLM.from_pretrained({str(out)!r}{trust}); "
            f"AutoTokenizer.from_pretrained({str(out)!r})"
        )

    return run_tool("lit_ffn export", body)


__all__ = ["evaluate_main", "export_main", "generate_main", "resolve_device"]
