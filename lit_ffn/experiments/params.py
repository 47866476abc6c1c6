"""``lit_ffn params``: parameter counts of every FFN variant in a model config.

    lit_ffn params --config configs/paper/qwen3_83m.yaml
    lit_ffn params --config configs/quickstart.yaml --ffn swiglu iso_gmlp my_ffn.yaml --model.dim=256

For each variant the base config is composed with ``configs/ffn/<name>.yaml``
(exactly as ``lit_ffn fit --config BASE --config configs/ffn/<name>.yaml``
would) and the decoder is built on the meta device (no memory, no init
cost), then counted:

* total         — every parameter once (a tied LM head is the embedding, not counted twice);
* non-embedding — total minus the token embedding ``V·D`` (Kaplan et al. 2020's N;
  an untied head, if any, is counted in it, as :meth:`Decoder.num_parameters` does);
* FFN           — the FFN blocks of all layers.

Printed as a Markdown table (the README and ``docs/experiments.md`` use it).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lit_ffn.errors import run_tool
from lit_ffn.ffn.registry import BUILTINS, resolve_variant
from lit_ffn.training.config import FitConfigParser, model_kwargs


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one decoder (see the module docstring for the definitions)."""

    total: int
    non_embedding: int
    ffn: int
    ffn_class: str
    hidden_dim: int | None


def count_parameters(model: Mapping[str, Any]) -> ParamCount:
    """Counts for the decoder described by a ``model`` config section (a resolved
    ``config.yaml``'s ``model:`` or a parsed namespace), built on the meta device."""
    import torch

    from lit_ffn.model import Decoder

    with torch.device("meta"):
        decoder = Decoder(**model_kwargs(model, Decoder))
    ffns = [layer.ffn for layer in decoder.layers]
    return ParamCount(
        total=decoder.num_parameters(),
        non_embedding=decoder.num_parameters(exclude_embedding=True),
        ffn=sum(p.numel() for f in ffns for p in f.parameters()),
        ffn_class=type(ffns[0]).__name__ if ffns else "-",
        hidden_dim=getattr(ffns[0], "hidden_dim", None) if ffns else None,
    )


Row = tuple[str, ParamCount, Any]


def variant_counts(configs: Sequence[str], ffns: Sequence[str], overrides: Sequence[str] = ()) -> tuple[Row, list[Row]]:
    """The base config's own model and each FFN variant composed onto ``configs``,
    as ``(name, counts, model config)``."""
    variants = [resolve_variant(spec) for spec in ffns]  # name errors before the (slow) parser is built
    parser = FitConfigParser()
    base = [arg for config in configs for arg in ("--config", str(config))]
    model = parser.parse([*base, *overrides]).model
    base_count = count_parameters(model)
    base_row = (f"base ({base_count.ffn_class})", base_count, model)
    rows = []
    for name, path in variants:
        model = parser.parse([*base, "--config", str(path), *overrides]).model
        rows.append((name, count_parameters(model), model))
    return base_row, rows


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def markdown_table(base: Row, rows: Sequence[Row]) -> str:
    """The Markdown parameter table; totals relative to the base config's own model."""
    model = base[2]
    tied = "tied" if model["tie_embeddings"] else "untied"
    lines = [
        (
            f"model: dim {model['dim']}, {model['n_layers']} layers, {model['n_heads']} query / {model['n_kv_heads']} "
            f"kv heads × head_dim {model['head_dim']}, vocabulary {model['vocab_size']:,} ({tied} embedding "
            f"{model['vocab_size'] * model['dim']:,} parameters)"
        ),
        "",
        f"| variant | class | hidden | FFN params (all layers) | non-embedding | total | total vs {base[0]} |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    reference = base[1].total
    for name, count, _ in rows:
        lines.append(
            f"| {name} | {count.ffn_class} | {count.hidden_dim if count.hidden_dim is not None else '-'} "
            f"| {count.ffn:,} | {count.non_embedding:,} | {count.total:,} ({_millions(count.total)}) "
            f"| {100 * (count.total - reference) / reference:+.3f}% |"
        )
    totals = [count.total for _, count, _ in rows] or [reference]
    lines += ["", f"spread of the totals: max/min − 1 = {100 * (max(totals) / min(totals) - 1):.3f}%"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit_ffn params",
        description="Print the parameter counts (total with a tied embedding counted once, non-embedding, FFN) "
        "of FFN variants in a model config, as a Markdown table. Extra --key=value flags are fit overrides.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", action="append", required=True, metavar="YAML", help="base config (repeatable)")
    parser.add_argument(
        "--ffn",
        nargs="+",
        default=list(BUILTINS),
        metavar="NAME_OR_YAML",
        help="variants: names of configs/ffn/*.yaml or YAML paths (default: every built-in)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args, overrides = build_parser().parse_known_args(argv)
        print(markdown_table(*variant_counts(args.config, args.ffn, overrides)))

    return run_tool("lit_ffn params", body)


__all__ = ["ParamCount", "count_parameters", "markdown_table", "variant_counts"]
