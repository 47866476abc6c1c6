"""``lit_ffn prepare``: the command line."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lit_ffn.data.format import unigram_reference
from lit_ffn.data.prepare.bpe import check_vocab_size
from lit_ffn.data.prepare.errors import PrepareError
from lit_ffn.data.prepare.inspect import inspect_dataset
from lit_ffn.data.prepare.pipeline import prepare_dataset
from lit_ffn.data.prepare.workers import DEFAULT_CHUNK_BYTES
from lit_ffn.errors import run_tool


def parse_bytes(text: str) -> int:
    """``"64MB"`` -> 67108864 (binary units; a plain number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 64MB")
    return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit_ffn prepare",
        description="Tokenize raw text (parquet with a 'text' column, jsonl(.gz), txt) into litdata chunks, "
        "or --inspect a prepared dataset.",
        epilog="example: lit_ffn prepare --input 'hf://datasets/HuggingFaceFW/fineweb/sample/10BT/*.parquet' "
        "--output data/fineweb-10BT --num-workers 16",
    )
    parser.add_argument(
        "--input",
        nargs="+",
        action="extend",
        default=[],
        metavar="PATH_OR_URL",
        help="files, directories, globs or fsspec URLs (hf://, s3://); repeatable",
    )
    parser.add_argument(
        "--output", metavar="DIR_OR_URL", help="dataset directory to create, or s3://bucket/prefix (gs://…)"
    )
    parser.add_argument("--tokenizer", help="'qwen3' (default) or a path to a tokenizer.json")
    parser.add_argument(
        "--train-tokenizer",
        action="store_true",
        help="train a byte-level BPE of --vocab-size ids on the training split only and ship it as DIR/tokenizer.json",
    )
    parser.add_argument("--vocab-size", metavar="N", help="ids of the --train-tokenizer vocabulary (at least 257)")
    parser.add_argument("--eos-token", help="end-of-document token of a tokenizer.json (default: a known one)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--val-docs", type=int, metavar="N", help="about N validation documents")
    split.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="fraction of documents for validation (default: 0.5%%, ~100 docs for small corpora, at most 10%%)",
    )
    parser.add_argument("--num-workers", type=int, default=1, help="tokenizer processes (default: 1)")
    parser.add_argument(
        "--chunk-bytes",
        type=parse_bytes,
        default=DEFAULT_CHUNK_BYTES,
        metavar="SIZE",
        help="litdata chunk size (default: 64MB)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset once the new one is complete"
    )
    parser.add_argument(
        "--storage-options",
        metavar="JSON_OR_@FILE",
        help="object-store options of an s3:// or gs:// --output (or --inspect URL), as data.storage_options: "
        'a JSON object, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\', or @FILE holding one',
    )
    parser.add_argument("--inspect", metavar="DIR", help="print the meta of DIR and decode sample blocks")
    parser.add_argument("--samples", type=int, default=3, help="blocks per split shown by --inspect (default: 3)")
    parser.add_argument("--block-size", type=int, default=257, help="tokens per block for --inspect (seq_len + 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit_ffn prepare``; user errors print one line and return 2."""
    parser = build_parser()

    def body() -> None:
        args = parser.parse_args(argv)
        storage_options = parse_storage_options(args.storage_options)
        if args.inspect:
            if args.input or args.output:
                raise PrepareError("--inspect takes no --input / --output")
            inspect_dataset(
                args.inspect, samples=args.samples, block_size=args.block_size, storage_options=storage_options
            )
            return
        if not args.input or not args.output:
            raise PrepareError("the following arguments are required: --input, --output (or use --inspect DIR)")
        meta = prepare_dataset(
            args.input,
            args.output,
            args.tokenizer,
            train_vocab_size=_train_vocab_size(args),
            val_fraction=args.val_fraction,
            val_docs=args.val_docs,
            num_workers=args.num_workers,
            overwrite=args.overwrite,
            eos_token=args.eos_token,
            chunk_bytes=args.chunk_bytes,
            verbose=True,
            storage_options=storage_options,
        )
        print(_summary(args.output, meta))

    return run_tool(parser.prog, body)  # PrepareError, DatasetError, TokenizerError: one line


def parse_storage_options(text: str | None) -> dict[str, Any] | None:
    """``--storage-options``: a JSON object, or ``@FILE`` holding one (None: the flag was not given)."""
    if text is None:
        return None
    source = "--storage-options"
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        source = f"--storage-options file {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise PrepareError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise PrepareError(
            f'{source} is not JSON ({exc}): give an object such as \'{{"endpoint_url": "http://host:9000"}}\''
        ) from None
    if not isinstance(options, dict):
        raise PrepareError(f"{source} must be a JSON object of storage options, got {type(options).__name__}")
    return options


def _train_vocab_size(args: argparse.Namespace) -> int | None:
    """``--vocab-size`` as an int when ``--train-tokenizer`` is given (one-line errors otherwise)."""
    if args.vocab_size is None:
        if args.train_tokenizer:
            raise PrepareError("--train-tokenizer needs --vocab-size N (e.g. --vocab-size 4096)")
        return None
    if not args.train_tokenizer:
        raise PrepareError("--vocab-size sizes a trained tokenizer: add --train-tokenizer")
    try:
        size = int(args.vocab_size)
    except ValueError:
        raise PrepareError(f"--vocab-size must be a positive integer, got {args.vocab_size!r}") from None
    return check_vocab_size(size)


def _summary(output: str, meta: Mapping[str, Any]) -> str:
    splits = ", ".join(
        f"{split}: {info['documents']:,} docs / {info['tokens']:,} tokens" for split, info in meta["splits"].items()
    )
    skipped = ", ".join(f"{count:,} {reason}" for reason, count in meta["skipped"].items() if count) or "none"
    unigram = unigram_reference(dict(meta))
    reference = f"; unigram reference {unigram:.3f} nats/token" if unigram is not None else ""
    return (
        f"wrote {output} ({meta['tokenizer']}, vocabulary {meta['vocab_size']:,}, {splits}; skipped rows: {skipped}"
        f"{reference}; {meta['prepare_seconds']} s)"
    )
