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
import functools
import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lit_ffn.errors import UserError

#: Where ``configs/ffn/<name>.yaml`` is looked up, in order: the working directory, then the source checkout.
REPO_ROOT = Path(__file__).resolve().parents[1]


def ffn_config_path(spec: str) -> tuple[str, Path]:
    """``(variant name, YAML path)`` for ``--ffn`` entries: a built-in name
    (``configs/ffn/<name>.yaml``, keys of :data:`lit_ffn.ffn.BUILTIN_FFNS`) or
    the path of any YAML holding a ``model.ffn`` section (named by its stem)."""
    from lit_ffn.ffn import BUILTIN_FFNS

    path = Path(spec)
    if spec.endswith((".yaml", ".yml")) or path.parent != Path("."):
        if not path.is_file():
            raise UserError(f"FFN config {spec} does not exist")
        return path.stem, path
    if spec not in BUILTIN_FFNS:
        raise UserError(
            f"unknown FFN '{spec}': use a built-in ({', '.join(BUILTIN_FFNS)}) or the path of a YAML file "
            "with a model.ffn section"
        )
    for root in (Path.cwd(), REPO_ROOT):
        candidate = root / "configs" / "ffn" / f"{spec}.yaml"
        if candidate.is_file():
            return spec, candidate
    raise UserError(f"configs/ffn/{spec}.yaml not found in {Path.cwd()} or {REPO_ROOT}: run from the lit_ffn checkout")


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one decoder (see the module docstring for the definitions)."""

    total: int
    non_embedding: int
    ffn: int
    ffn_class: str
    hidden_dim: Optional[int]


def _ffn_factory(ffn: Any) -> Any:
    """A factory from a parsed/saved ``model.ffn`` (``class_path`` + ``init_args`` mapping)."""
    if callable(ffn):
        return ffn
    get = ffn.get if hasattr(ffn, "get") else functools.partial(getattr, ffn)
    module_name, _, class_name = str(get("class_path")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise UserError(f"cannot import FFN class {module_name}.{class_name}: {err}") from None
    init_args = get("init_args") or {}
    init_args = dict(init_args.items()) if hasattr(init_args, "items") else dict(vars(init_args))
    return functools.partial(cls, **init_args)


def count_parameters(model: Mapping[str, Any]) -> ParamCount:
    """Counts for the decoder described by a ``model`` config section (a resolved
    ``config.yaml``'s ``model:`` or a parsed namespace), built on the meta device."""
    import torch

    from lit_ffn.model import Decoder

    accepted = inspect.signature(Decoder).parameters
    kwargs = {key: model[key] for key in accepted if key != "ffn" and key in model}
    factory = _ffn_factory(model["ffn"])
    with torch.device("meta"):
        decoder = Decoder(ffn=factory, **kwargs)
    ffns = [layer.ffn for layer in decoder.layers]
    return ParamCount(
        total=decoder.num_parameters(),
        non_embedding=decoder.num_parameters(exclude_embedding=True),
        ffn=sum(p.numel() for f in ffns for p in f.parameters()),
        ffn_class=type(ffns[0]).__name__ if ffns else "-",
        hidden_dim=getattr(ffns[0], "hidden_dim", None) if ffns else None,
    )


class FitConfigParser:
    """Parses ``lit_ffn fit`` arguments into the resolved config without building
    anything: LitFFNCLI's own parser (so defaults, ``--config`` composition and
    links are exactly those of ``fit``), built once and reused."""

    def __init__(self) -> None:
        import warnings

        from lit_ffn.lightning_cli import LitFFNCLI

        # args=[...] from Python is intended here (LightningCLI warns when sys.argv is also set).
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")

        class _ParseOnly(LitFFNCLI):
            def _set_seed(self) -> None: ...
            def before_instantiate_classes(self) -> None: ...
            def instantiate_classes(self) -> None: ...
            def after_instantiate_classes(self) -> None: ...
            def _run_subcommand(self, subcommand: Optional[str]) -> None: ...

        self._cli = _ParseOnly(args=["fit"])

    def parse(self, args: Sequence[str]) -> Any:
        """The ``fit`` section (a jsonargparse Namespace) for ``lit_ffn fit ARGS``."""
        from lit_ffn.errors import user_error_message

        try:
            return self._cli.parser.parse_args(["fit", *args]).fit
        except Exception as err:  # noqa: BLE001 - turn parse errors into one line
            message = user_error_message(err)
            if message is None:
                raise
            raise UserError(message) from None


Row = tuple[str, ParamCount, Any]


def variant_counts(configs: Sequence[str], ffns: Sequence[str], overrides: Sequence[str] = ()) -> tuple[Row, list[Row]]:
    """The base config's own model and each FFN variant composed onto ``configs``,
    as ``(name, counts, model config)``."""
    variants = [ffn_config_path(spec) for spec in ffns]  # name errors before the (slow) parser is built
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
        f"model: dim {model['dim']}, {model['n_layers']} layers, {model['n_heads']} query / {model['n_kv_heads']} "
        f"kv heads × head_dim {model['head_dim']}, vocabulary {model['vocab_size']:,} ({tied} embedding "
        f"{model['vocab_size'] * model['dim']:,} parameters)",
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
    from lit_ffn.ffn import BUILTIN_FFNS

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
        default=list(BUILTIN_FFNS),
        metavar="NAME_OR_YAML",
        help="variants: names of configs/ffn/*.yaml or YAML paths (default: every built-in)",
    )
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    try:
        args, overrides = parser.parse_known_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        print(markdown_table(*variant_counts(args.config, args.ffn, overrides)))
    except UserError as err:
        print(f"lit_ffn params: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


__all__ = ["FitConfigParser", "ParamCount", "count_parameters", "ffn_config_path", "markdown_table", "variant_counts"]
