"""``lit_ffn export --format hf``: a checkpoint → a directory ``transformers`` loads.

The decoder *is* Qwen3 (``tests/test_model_parity.py``); only the FFN can differ.  Two kinds of export:

**Stock** (no custom code).  transformers' ``Qwen3MLP`` computes ``down(act(gate(x)) ⊙ up(x))`` with
``act = ACT2FN[config.hidden_act]``, so an FFN of exactly that form maps onto stock
``Qwen3ForCausalLM`` through ``hidden_act``:

=========================  ======================  ===========================
lit_ffn FFN                act                     ``hidden_act``
=========================  ======================  ===========================
SwiGLU                     silu(z) = z·σ(z)        ``silu``
GEGLU (approximate=none)   z·Φ(z) (erf)            ``gelu``
GEGLU (approximate=tanh)   tanh approximation      ``gelu_pytorch_tanh``
ReGLU                      max(z, 0)               ``relu``
GLU                        σ(z)                    ``sigmoid``
Bilinear                   z                       ``linear``
=========================  ======================  ===========================

(each name checked in transformers' ``ACT2CLS``), bias-free as the built-ins are by default, every
layer the same class and width (``intermediate_size``).  The class must be exactly the built-in one:
a subclass may change ``forward``.

**Remote code** for every other FFN — 2-matrix FFNs (``down(act(up(x)))``: Qwen3MLP always has a
gate), DynamicGEGLU (a token-wise gate scale α from a LayerNorm), IsoGMLP (a LayerNorm inside the
FFN), FFNs with biases, subclasses and a user's own class: ``config.json`` gets
``model_type = "lit_ffn_qwen3"`` and an ``auto_map``, and the directory holds
``configuration_lit_ffn.py``, ``modeling_lit_ffn.py`` and the FFN's own module source with what it
imports (:mod:`lit_ffn.inference.remote_code`, which also says what cannot be shipped); load with
``trust_remote_code=True``.  Weight names are Qwen3's, the FFN's parameters under
``model.layers.<i>.mlp.<its own names>``.

Written (``OUT/``): ``config.json`` (Qwen3Config: shape, ``rope_theta`` and ``rope_parameters``, eps,
tied embeddings, ``max_position_embeddings`` = the run's training ``data.seq_len``),
``model.safetensors`` (Hugging Face names; a tied head is stored once, as transformers does),
``generation_config.json`` (EOS), ``tokenizer.json`` + ``tokenizer_config.json``
(:mod:`lit_ffn.inference.hf_tokenizer`), the remote-code files when needed, and ``lit_ffn_export.json``
(source checkpoint, step, FFN, versions, and the verification below).

Verification (default, needs transformers): the export is loaded back with
``AutoModelForCausalLM.from_pretrained`` (``trust_remote_code=True`` for a remote-code export) and its
fp32 logits on a probe sequence must equal lit_ffn's (with the weights rounded to the export's dtype)
within ``1e-4`` max abs diff — else nothing is published.

Atomicity: everything is written into a temporary directory next to ``OUT`` and moved into place by
one ``os.replace``; an existing ``OUT`` is refused without ``--overwrite``, and with it the old export
is renamed aside first and deleted only once the new one is in place, so ``OUT`` is always either the
old complete export or the new complete one.  The files are staged as ``.OUT.partial-<pid>/OUT.name``
so that the copy transformers' remote-code loader makes of them during verification (its modules cache
is keyed by the directory's name and the files' hash) is the one a later load of ``OUT`` reuses.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_ffn.errors import UserError
from lit_ffn.ffn import GEGLU, GLU, Bilinear, ReGLU, SwiGLU
from lit_ffn.ffn.registry import import_class, spec_parts, variant_name
from lit_ffn.inference import remote_code
from lit_ffn.inference.hf_tokenizer import write_tokenizer_files
from lit_ffn.inference.loading import LoadedModel
from lit_ffn.model import Decoder

#: exportable FFN classes → transformers ``hidden_act`` (GEGLU: by its ``approximate``)
HIDDEN_ACT: dict[type[nn.Module], str | dict[str, str]] = {
    SwiGLU: "silu",
    GEGLU: {"none": "gelu", "tanh": "gelu_pytorch_tanh"},
    ReGLU: "relu",
    GLU: "sigmoid",
    Bilinear: "linear",
}
#: every ``hidden_act`` an export can get (all of them keys of transformers' ``ACT2CLS``: tested)
HIDDEN_ACT_NAMES = ("silu", "gelu", "gelu_pytorch_tanh", "relu", "sigmoid", "linear")
EXPORTABLE = "SwiGLU, GEGLU (exact or tanh), ReGLU, GLU and Bilinear without biases"
STOCK_ARCHITECTURE = "Qwen3ForCausalLM"
FORMATS = ("hf",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: max |logits_hf − logits_lit_ffn| an export may show (the bound tests/test_model_parity.py holds the decoder to)
VERIFY_TOLERANCE = 1e-4
#: when the run's context length is unknown (Qwen3Config's default)
DEFAULT_MAX_POSITIONS = 32_768


def stock_hidden_act(ffn: nn.Module) -> str | None:
    """The ``hidden_act`` that makes Qwen3MLP compute ``ffn``; None when no stock Qwen3MLP does."""
    try:
        return hidden_act(ffn)
    except UserError:
        return None


def hidden_act(ffn: nn.Module) -> str:
    """The transformers ``hidden_act`` that makes Qwen3MLP compute ``ffn`` (UserError when none does)."""
    act = HIDDEN_ACT.get(type(ffn))
    if isinstance(act, dict):
        act = act.get(getattr(ffn, "approximate", ""))
    if act is None:
        raise UserError(
            f"cannot export FFN {type(ffn).__module__}.{type(ffn).__name__} to a stock transformers model: "
            f"Qwen3MLP computes down(act(gate(x)) * up(x)), which covers {EXPORTABLE}; evaluate or generate with "
            "this checkpoint directly (lit_ffn evaluate / lit_ffn generate) instead"
        )
    if any(proj.bias is not None for proj in (ffn.gate_proj, ffn.up_proj, ffn.down_proj)):
        raise UserError(
            f"cannot export {type(ffn).__name__} with bias=True: Qwen3MLP has no biases (exportable: {EXPORTABLE})"
        )
    return act


@dataclass(frozen=True)
class MLPShape:
    hidden_act: str
    intermediate_size: int


def mlp_shape(decoder: Decoder) -> MLPShape:
    """The one ``(hidden_act, intermediate_size)`` of every layer's FFN (UserError otherwise)."""
    shapes = {MLPShape(hidden_act(layer.ffn), layer.ffn.hidden_dim) for layer in decoder.layers}
    if len(shapes) != 1:
        raise UserError(f"cannot export: the layers' FFNs differ ({sorted(map(str, shapes))}); Qwen3 has one MLP shape")
    return shapes.pop()


@dataclass(frozen=True)
class RemoteFFN:
    """An FFN exported as remote code: its bundled source and how every layer builds it.

    ``init_args`` (JSON) are the arguments besides the width: layer ``i``'s FFN is
    ``<bundle.entry>(hidden_size, **init_args)``.  ``intermediate_size`` is the FFN's ``hidden_dim``
    where it has one (the model's width otherwise): it only sizes the stock Qwen3MLP the remote model
    builds before replacing it."""

    bundle: remote_code.SourceBundle
    class_path: str
    init_args: dict[str, Any]
    intermediate_size: int


def export_plan(decoder: Decoder, ffn_spec: Any = None) -> MLPShape | RemoteFFN:
    """How ``decoder`` exports: onto stock Qwen3 (:class:`MLPShape`) when every layer's FFN is one Qwen3MLP
    can compute, else as remote code (:class:`RemoteFFN`, built from ``ffn_spec``, the run's ``model.ffn``).

    Raises:
        UserError: layers with different FFNs, or an FFN whose source cannot be shipped.
    """
    if all(stock_hidden_act(layer.ffn) is not None for layer in decoder.layers):
        return mlp_shape(decoder)
    return remote_ffn(decoder, ffn_spec)


def remote_ffn(decoder: Decoder, ffn_spec: Any = None) -> RemoteFFN:
    """The :class:`RemoteFFN` of ``decoder``: the object the spec's ``class_path`` names (the FFN's class
    without a spec), which every layer must have built with the same parameter shapes."""
    ffn = decoder.layers[0].ffn
    shapes = [{k: tuple(v.shape) for k, v in layer.ffn.state_dict().items()} for layer in decoder.layers]
    if any(type(layer.ffn) is not type(ffn) for layer in decoder.layers) or any(s != shapes[0] for s in shapes):
        raise UserError("cannot export: the layers' FFNs differ (class or shapes); the export builds one FFN per layer")
    class_path, init_args = spec_parts(ffn_spec) if ffn_spec is not None else (None, {})
    target: Any = type(ffn)
    if class_path:
        target = import_class(class_path)
        if isinstance(target, type) and target is not type(ffn):
            raise UserError(
                f"cannot export: model.ffn names {class_path} but the layers hold "
                f"{type(ffn).__module__}.{type(ffn).__qualname__}"
            )
    bundle = remote_code.SourceBundle.for_object(target)
    hidden = getattr(ffn, "hidden_dim", None)
    return RemoteFFN(
        bundle=bundle,
        class_path=class_path or bundle.subject,
        init_args=remote_code.json_init_args(bundle.subject, init_args),
        intermediate_size=hidden if isinstance(hidden, int) and not isinstance(hidden, bool) else decoder.dim,
    )


def remote_hf_config(
    decoder: Decoder, remote: RemoteFFN, eos_id: int, seq_len: int | None, dtype: str
) -> dict[str, Any]:
    """``config.json`` of the remote-code model: :func:`hf_config` under lit_ffn's ``model_type``, with
    ``auto_map`` naming the shipped classes and the FFN's ``ffn_init_args``."""
    config = hf_config(decoder, MLPShape("silu", remote.intermediate_size), eos_id, seq_len, dtype)
    config.update(
        architectures=[remote_code.MODEL_CLASS],
        model_type=remote_code.MODEL_TYPE,
        auto_map={
            "AutoConfig": f"{remote_code.CONFIG_FILE}.{remote_code.CONFIG_CLASS}",
            "AutoModelForCausalLM": f"{remote_code.MODELING_FILE}.{remote_code.MODEL_CLASS}",
        },
        ffn_class_path=remote.class_path,
        ffn_init_args=remote.init_args,
    )
    return config


def hf_config(decoder: Decoder, shape: MLPShape, eos_id: int, seq_len: int | None, dtype: str) -> dict[str, Any]:
    """``config.json`` of the Qwen3ForCausalLM equal to ``decoder``.

    ``rope_theta`` and ``torch_dtype`` are written for transformers 4.x readers and ``rope_parameters`` and
    ``dtype`` for 5.x: a reader that found no theta would silently use its default (1e4)."""
    attn = decoder.layers[0].attn
    theta = float(decoder.rope.theta)
    return {
        "architectures": [STOCK_ARCHITECTURE],
        "model_type": "qwen3",
        "vocab_size": decoder.vocab_size,
        "hidden_size": decoder.dim,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": len(decoder.layers),
        "num_attention_heads": attn.n_heads,
        "num_key_value_heads": attn.n_kv_heads,
        "head_dim": attn.head_dim,
        "hidden_act": shape.hidden_act,
        "max_position_embeddings": seq_len or DEFAULT_MAX_POSITIONS,
        "initializer_range": decoder.init_std,
        "rms_norm_eps": decoder.norm.eps,
        "tie_word_embeddings": decoder.lm_head is None,
        "rope_theta": theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": len(decoder.layers),
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


#: lit_ffn layer-relative names → transformers' (``model.layers.<i>.`` prefixed)
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.o_proj.weight": "self_attn.o_proj.weight",
    "attn.q_norm.weight": "self_attn.q_norm.weight",
    "attn.k_norm.weight": "self_attn.k_norm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
#: the FFN's own tensors keep their names: ``layers.<i>.ffn.<name>`` → ``model.layers.<i>.mlp.<name>``
_FFN_PREFIX = ("ffn.", "mlp.")


def hf_state_dict(decoder: Decoder, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The decoder's weights under transformers' Qwen3 names (contiguous CPU tensors of ``dtype``);
    every tensor is mapped or it is an error, so nothing is silently dropped."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in decoder.state_dict().items():
        if name == "embed.weight":
            key = "model.embed_tokens.weight"
        elif name == "norm.weight":
            key = "model.norm.weight"
        elif name == "lm_head.weight":
            key = "lm_head.weight"
        else:
            _, index, rest = name.split(".", 2) if name.startswith("layers.") else ("", "", name)
            if rest.startswith(_FFN_PREFIX[0]) and index:
                mapped = _FFN_PREFIX[1] + rest.removeprefix(_FFN_PREFIX[0])
            elif rest in _LAYER_NAMES:
                mapped = _LAYER_NAMES[rest]
            else:
                raise UserError(f"cannot export parameter {name}: Qwen3ForCausalLM has no place for it")
            key = f"model.layers.{index}.{mapped}"
        out[key] = tensor.detach().to("cpu", dtype).contiguous()
    return out


# ------------------------------------------------------------------ verification
def probe_tokens(vocab_size: int, length: int = 24) -> torch.Tensor:
    """A fixed (2, length) id sequence spread over the vocabulary."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (2, length), generator=generator)


@torch.inference_mode()
def max_logit_difference(
    export_dir: Path, decoder: Decoder, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
) -> float:
    """max |logits of the export loaded by transformers (computed in fp32) − lit_ffn's logits| on
    :func:`probe_tokens`; lit_ffn's side uses the weights rounded to ``dtype`` as the export stores them."""
    import transformers
    from transformers import AutoModelForCausalLM

    dtype_kwarg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    hf = AutoModelForCausalLM.from_pretrained(
        export_dir, trust_remote_code=trust_remote_code, **{dtype_kwarg: torch.float32}
    ).eval()
    reference = decoder
    if dtype != torch.float32:  # the same rounding the export applied
        reference = copy.deepcopy(decoder)
        for param in reference.parameters():
            param.data = param.data.to(dtype).float()
    tokens = probe_tokens(decoder.vocab_size)
    device = decoder.embed.weight.device
    expected = reference.logits(reference(tokens.to(device))).float().cpu()
    got = hf(tokens).logits.float()
    return float((got - expected).abs().max())


# ------------------------------------------------------------------ writing
def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists: choose another --out, delete it, or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory: choose another --out")


def _publish(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` directory to ``out``: the old ``out`` (if any) is renamed aside first
    and removed only after the new one is in place."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))  # only a holder: never published
        os.replace(out, old / out.name)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:  # put the previous export back
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_hf(
    loaded: LoadedModel,
    out: str | Path,
    overwrite: bool = False,
    dtype: str = "float32",
    verify: bool = True,
) -> dict[str, Any]:
    """Write the Hugging Face export of ``loaded`` to ``out``; returns what ``lit_ffn_export.json`` records.

    Raises:
        UserError: an FFN whose source cannot be shipped, an existing ``out`` without ``overwrite``, a
            missing tokenizer, or an export that transformers does not reproduce (``verify``).
    """
    from safetensors.torch import save_file

    out = Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if loaded.tokenizer is None:
        raise UserError("an export needs the model's tokenizer (pass --tokenizer)")
    plan = export_plan(loaded.decoder, loaded.model_config.get("ffn"))  # refuse before anything is written
    _check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    eos = loaded.tokenizer.eos_id
    record: dict[str, Any] = {
        "format": "hf",
        "source": str(loaded.checkpoint),
        "global_step": loaded.global_step,
        "ffn": variant_name(loaded.model_config.get("ffn", {})),
        "architecture": STOCK_ARCHITECTURE,
        "dtype": dtype,
        "tokenizer": loaded.tokenizer.name,
        "versions": _versions(),
    }
    if isinstance(plan, MLPShape):
        record["hidden_act"] = plan.hidden_act
        config = hf_config(loaded.decoder, plan, eos, loaded.seq_len, dtype)
        code = {}
    else:
        record["architecture"] = remote_code.MODEL_CLASS
        config = remote_hf_config(loaded.decoder, plan, eos, loaded.seq_len, dtype)
        code = {
            remote_code.MODELING_FILE: remote_code.modeling_source(plan.bundle, plan.class_path),
            **plan.bundle.files,
        }
        code[remote_code.CONFIG_FILE] = remote_code.configuration_source(remote_code.code_digest(code))
        record["remote_code"] = {"ffn": plan.bundle.subject, "files": [f"{stem}.py" for stem in code]}
    # staged as HOLDER/OUT.name: transformers caches remote code by the directory's name (module docstring)
    holder = out.parent / f".{out.name}.partial-{os.getpid()}"
    if holder.exists():  # left by an earlier export of this process id that was killed
        shutil.rmtree(holder)
    holder.mkdir()  # not mkdtemp: its 0700 mode would become the export's
    staging = holder / out.name
    try:
        staging.mkdir()
        _write_json(staging / "config.json", config)
        for stem, source in code.items():
            (staging / f"{stem}.py").write_text(source, encoding="utf-8")
        _write_json(staging / "generation_config.json", {"eos_token_id": eos, "pad_token_id": eos})
        weights = hf_state_dict(loaded.decoder, DTYPES[dtype])
        if config["tie_word_embeddings"]:
            weights.pop("lm_head.weight", None)
        save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
        os.chmod(staging / "model.safetensors", 0o666 & ~_umask())  # safetensors writes it 0600
        write_tokenizer_files(loaded.tokenizer, staging, loaded.seq_len)
        if verify:
            record["verified"] = _verify(staging, loaded.decoder, dtype, trust_remote_code=bool(code))
        _write_json(staging / "lit_ffn_export.json", record)
        _publish(staging, out)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    return record


def _verify(staging: Path, decoder: Decoder, dtype: str, trust_remote_code: bool) -> dict[str, Any]:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return {"checked": False, "reason": "transformers is not installed (pip install transformers)"}
    diff = max_logit_difference(staging, decoder, DTYPES[dtype], trust_remote_code=trust_remote_code)
    if not diff <= VERIFY_TOLERANCE:
        raise UserError(
            f"the export does not reproduce the model: transformers' logits differ from lit_ffn's by {diff:.3g} "
            f"(tolerance {VERIFY_TOLERANCE:g}); nothing was written — please report this as a lit_ffn bug"
        )
    return {
        "checked": True,
        "max_abs_logit_diff": diff,
        "tolerance": VERIFY_TOLERANCE,
        "probe": "2 x 24 random token ids (seed 0), transformers in fp32",
        "trust_remote_code": trust_remote_code,
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("lit_ffn", "torch", "transformers", "safetensors", "tokenizers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


__all__ = [
    "DTYPES",
    "EXPORTABLE",
    "FORMATS",
    "HIDDEN_ACT",
    "HIDDEN_ACT_NAMES",
    "STOCK_ARCHITECTURE",
    "VERIFY_TOLERANCE",
    "MLPShape",
    "RemoteFFN",
    "export_hf",
    "export_plan",
    "hf_config",
    "hf_state_dict",
    "hidden_act",
    "max_logit_difference",
    "mlp_shape",
    "remote_ffn",
    "remote_hf_config",
    "stock_hidden_act",
]
