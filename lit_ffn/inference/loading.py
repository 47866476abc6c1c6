"""Any lit_ffn checkpoint → the trained :class:`~lit_ffn.model.Decoder` and the tokenizer of its data.

What ``--ckpt`` may name:

* a single-file checkpoint (``checkpoints/last.ckpt`` of a single-device or DDP run, or the output of
  ``lit_ffn consolidate``);
* a sharded checkpoint directory (FSDP2 / FSDP1 ``torch.distributed.checkpoint``: a ``.metadata`` file,
  one ``.distcp`` shard per rank and Lightning's ``meta.pt``), gathered in memory on CPU by
  :func:`lit_ffn.distributed.consolidate.load_sharded_checkpoint`;
* a run directory (``runs/<exp>/<variant>/seed_<s>/``, which holds ``config.yaml``): its ``checkpoints/last.ckpt``.

The model is rebuilt from the ``model`` section the checkpoint itself stores (LightningCLI saves the
run's parsed ``model`` config as the module's hyper-parameters, so it is what produced these weights),
or from the run's ``config.yaml`` for a checkpoint without one, through the same
:func:`~lit_ffn.model_config.build_decoder` as ``lit_ffn fit`` — so every built-in FFN and any
user class importable by its class path works.  The weights are loaded strictly: a missing or extra
tensor is an error, never a partly random model.

The tokenizer is the one the run's dataset was prepared with: ``config.yaml`` → ``data.data_dir`` →
``meta.json`` (``tokenizer``, ``eos_id``).  A checkpoint with no run directory around it (a copied
or consolidated file elsewhere) needs ``--tokenizer``.  Every failure is one :class:`UserError` line.
"""

from __future__ import annotations

import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from lit_ffn.data.format import DatasetError, read_meta, tokenizer_spec
from lit_ffn.data.tokenizer import HFTokenizer, Tokenizer, load_tokenizer
from lit_ffn.errors import UserError, first_line
from lit_ffn.ffn.registry import factory_name
from lit_ffn.model import Decoder
from lit_ffn.model_config import build_decoder as fresh_decoder
from lit_ffn.model_config import model_kwargs
from lit_ffn.parameter_names import unwrapped_parameter_name

CONFIG_FILE = "config.yaml"
#: ``model`` hyper-parameters every lit_ffn checkpoint has (LitDecoder's shape arguments).
REQUIRED_HPARAMS = ("ffn", "vocab_size", "dim", "n_layers")
_ZIP_MAGIC = b"PK\x03\x04"
#: what torch.load raises for a file that is not an intact checkpoint (a text file: KeyError; a cut one: RuntimeError)
_UNREADABLE = (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError, pickle.UnpicklingError)


@dataclass
class Located:
    """Where the pieces of a ``--ckpt`` argument are.

    Attributes:
        checkpoint: the file or sharded directory to read (symlinks resolved).
        run_dir: the run directory around it (holding ``config.yaml``), if any.
        config: the parsed ``config.yaml`` of ``run_dir`` (``{}`` without one).
    """

    checkpoint: Path
    run_dir: Path | None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A trained decoder ready for inference (eval mode, fp32) and what is known about its run.

    Attributes:
        decoder: the model, with the checkpoint's weights.
        tokenizer: the dataset's tokenizer (None only when the caller did not ask for it).
        checkpoint: the file or directory the weights came from.
        run_dir: the run directory, if the checkpoint sits in one.
        model_config: the ``model`` section the decoder was built from (``ffn`` as class_path/init_args).
        seq_len: the context length the model was trained with (``data.seq_len``), if known.
        global_step: optimizer steps the checkpoint had trained, if recorded.
    """

    decoder: Decoder
    tokenizer: Tokenizer | None
    checkpoint: Path
    run_dir: Path | None
    model_config: dict[str, Any]
    seq_len: int | None
    global_step: int | None


# ------------------------------------------------------------------ locating
def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read {path}: {' '.join(first_line(err).split())}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a lit_ffn run config (no mapping at its top level)")
    return config


def locate(source: str | Path) -> Located:
    """Resolve a ``--ckpt`` argument (checkpoint file, sharded directory or run directory)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(
            f"checkpoint {source} does not exist (give a .ckpt file, a sharded checkpoint directory or a run directory)"
        )
    if path.is_dir() and not (path / ".metadata").is_file():
        if not (path / CONFIG_FILE).is_file():
            if (path / "checkpoints").is_dir():
                raise UserError(
                    f"run directory {source} has no {CONFIG_FILE}, so the model cannot be rebuilt from it: give the "
                    f"checkpoint itself (--ckpt {path / 'checkpoints' / 'last.ckpt'}) and --tokenizer"
                )
            raise UserError(
                f"{source} is a directory but neither a run directory (no {CONFIG_FILE}) nor a sharded checkpoint "
                "(no .metadata file)"
            )
        last = path / "checkpoints" / "last.ckpt"
        if not last.exists():
            found = (
                sorted(p.name for p in (path / "checkpoints").glob("*.ckpt")) if (path / "checkpoints").is_dir() else []
            )
            hint = f"; it has {', '.join(found)}: pass one with --ckpt" if found else ""
            raise UserError(f"run directory {source} has no checkpoints/last.ckpt{hint}")
        return Located(last.resolve(), path, _read_config(path))
    # a checkpoint: inside a run directory when it sits in <run>/checkpoints/ next to <run>/config.yaml
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    if run_dir is not None and not (run_dir / CONFIG_FILE).is_file():
        run_dir = None
    return Located(path.resolve(), run_dir, _read_config(run_dir) if run_dir is not None else {})


# ------------------------------------------------------------------ reading
def _torch_load(path: Path) -> Any:
    """``torch.load`` on CPU: tensors-only unpickling first, the full unpickler for checkpoints whose
    hyper-parameters hold Python objects (a module built in Python with ``ffn=MyClass``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err).lower() and "weights only" not in str(err).lower():
            raise
        return torch.load(path, map_location="cpu", weights_only=False)


def check_checkpoint_file(path: Path) -> None:
    """Cheap checks before anything is loaded: a ``torch.save`` zip archive, complete (its central
    directory, written last, is there).  UserError: unreadable, truncated, or not a checkpoint."""
    try:
        with open(path, "rb") as file:
            head = file.read(4)
        intact = zipfile.is_zipfile(path)
    except OSError as err:
        raise UserError(f"cannot read checkpoint {path}: {first_line(err)}") from None
    if head == _ZIP_MAGIC and not intact:
        raise UserError(
            f"checkpoint {path} is truncated (its torch.save archive has no central directory): the save was cut "
            "short; use another checkpoint of the run"
        )
    if not intact:
        raise UserError(f"checkpoint {path} is not a PyTorch checkpoint file (no torch.save archive)")


def read_checkpoint_file(path: Path) -> dict[str, Any]:
    """The contents of a single-file checkpoint (UserError: unreadable, truncated, not a checkpoint)."""
    check_checkpoint_file(path)
    try:
        contents = _torch_load(path)
    except ImportError as err:  # the hyper-parameters pickle a class (a user's FFN) that cannot be imported here
        raise UserError(
            f"checkpoint {path} refers to a class that cannot be imported ({first_line(err)}): put its module on PYTHONPATH"
        ) from None
    except _UNREADABLE as err:
        raise UserError(f"checkpoint {path} is corrupt: {first_line(err)}") from None
    return contents


def read_sharded_checkpoint(path: Path) -> dict[str, Any]:
    """A DCP directory gathered into one weights-only checkpoint dict, in memory (via a scratch file)."""
    from torch.distributed.checkpoint.api import CheckpointException

    from lit_ffn.distributed.consolidate import load_sharded_checkpoint, to_weights_only

    unreadable = (CheckpointException, *_UNREADABLE)  # DCP wraps every rank's read error in CheckpointException
    with tempfile.TemporaryDirectory(prefix="lit_ffn_ckpt_") as scratch:
        try:
            contents = load_sharded_checkpoint(path, Path(scratch) / "full.pt")
        except unreadable as err:
            raise UserError(
                f"sharded checkpoint {path} cannot be read (truncated or incomplete shards?): {first_line(err)}"
            ) from None
    return to_weights_only(contents)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Contents of a single-file or sharded checkpoint, checked to be a lit_ffn one."""
    contents = read_sharded_checkpoint(path) if path.is_dir() else read_checkpoint_file(path)
    if not isinstance(contents, dict) or not isinstance(contents.get("state_dict"), dict):
        keys = ", ".join(map(str, list(contents)[:6])) if isinstance(contents, dict) else type(contents).__name__
        raise UserError(
            f"{path} is not a lit_ffn checkpoint (no Lightning 'state_dict'; it holds: {keys or 'nothing'})"
        )
    return contents


# ------------------------------------------------------------------ building
def model_section(contents: dict[str, Any], located: Located) -> dict[str, Any]:
    """The ``model`` config to rebuild the decoder from: the checkpoint's hyper-parameters, else config.yaml's."""
    hparams = contents.get("hyper_parameters")
    if isinstance(hparams, dict) and all(key in hparams for key in REQUIRED_HPARAMS):
        return dict(hparams)
    model = located.config.get("model")
    if isinstance(model, dict) and all(key in model for key in REQUIRED_HPARAMS):
        return dict(model)
    raise UserError(
        f"{located.checkpoint} is not a lit_ffn checkpoint: it records no LitDecoder hyper-parameters "
        f"({', '.join(REQUIRED_HPARAMS)}) and no run config.yaml sits next to it"
    )


def decoder_state_dict(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """LitDecoder's ``model.*`` tensors renamed to the Decoder's own names, wrapper prefixes removed
    (``_checkpoint_wrapped_module.``, ``_orig_mod.``, ``_fsdp_wrapped_module.``)."""
    return {
        unwrapped_parameter_name(name).removeprefix("model."): tensor
        for name, tensor in state_dict.items()
        if name.startswith("model.") and isinstance(tensor, torch.Tensor)
    }


def _ffn_name(model: dict[str, Any]) -> str:
    """The FFN class a ``model`` section names (for messages)."""
    try:
        return factory_name(model_kwargs(model, Decoder).get("ffn"))
    except UserError:
        return "unknown FFN"


def build_decoder(model: dict[str, Any], state_dict: dict[str, Any], checkpoint: Path) -> Decoder:
    """The decoder of ``model`` (a saved ``model`` section) holding ``state_dict``'s weights, strictly."""
    try:
        decoder = fresh_decoder(model)
    except (ValueError, TypeError) as err:  # the decoder's or the FFN's own check of the recorded shape
        raise UserError(
            f"the model recorded with {checkpoint} cannot be built ({_ffn_name(model)}): {first_line(err)}"
        ) from None
    weights = decoder_state_dict(state_dict)
    expected = decoder.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(names[:4])}{' …' if len(names) > 4 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if names
        )
        raise UserError(
            f"the weights in {checkpoint} do not fit the model its config describes ({_ffn_name(model)}): {detail}"
        )
    decoder.load_state_dict(weights, strict=True)
    return decoder.float().eval()


# ------------------------------------------------------------------ tokenizer
def run_tokenizer(located: Located, override: str | None = None) -> Tokenizer:
    """The tokenizer ``override`` names, or the one recorded in the run's dataset ``meta.json``."""
    if override is not None:
        return load_tokenizer(override)
    data_dir = (located.config.get("data") or {}).get("data_dir")
    if located.run_dir is None or not data_dir:
        raise UserError(
            f"cannot tell which tokenizer {located.checkpoint} was trained with: it is not inside a run directory "
            "(<run>/checkpoints/ next to <run>/config.yaml); pass --tokenizer qwen3 or --tokenizer path/to/tokenizer.json"
        )
    try:
        meta = read_meta(data_dir)
    except DatasetError as err:
        raise UserError(
            f"the run's dataset data.data_dir={data_dir} (from {located.run_dir / CONFIG_FILE}) cannot be read to name "
            f"its tokenizer ({err}); pass --tokenizer qwen3 or --tokenizer path/to/tokenizer.json"
        ) from None
    spec, eos_id = tokenizer_spec(data_dir, meta), meta.get("eos_id")
    try:
        tokenizer = load_tokenizer(spec)
        if isinstance(tokenizer, HFTokenizer) and eos_id is not None and tokenizer.eos_id != eos_id:
            tokenizer = load_tokenizer(spec, eos_token=tokenizer.id_to_token(eos_id))  # prepared with --eos-token
    except UserError as err:
        raise UserError(
            f"the run's tokenizer {spec} (from {data_dir}/meta.json) cannot be loaded: {err}; pass --tokenizer"
        ) from None
    return tokenizer


# ------------------------------------------------------------------ all of it
def load_model(
    source: str | Path,
    tokenizer: str | None = None,
    device: str | torch.device = "cpu",
    need_tokenizer: bool = True,
) -> LoadedModel:
    """Load the decoder (and tokenizer) of ``source``: a checkpoint file, a sharded directory or a run directory.

    Args:
        source: what ``--ckpt`` names.
        tokenizer: a :func:`~lit_ffn.data.tokenizer.load_tokenizer` spec overriding the run's own.
        device: where the decoder is put.
        need_tokenizer: False to skip the tokenizer (``LoadedModel.tokenizer`` is then the override or None).

    Raises:
        UserError: one line for a missing, truncated or foreign checkpoint, a run directory without
            config.yaml, weights that do not fit the config, or an unknown tokenizer.
    """
    located = locate(source)
    if located.checkpoint.is_file():
        check_checkpoint_file(located.checkpoint)
    # the tokenizer before the weights: a wrong --tokenizer or a moved dataset fails before a large checkpoint is read
    tok = run_tokenizer(located, tokenizer) if need_tokenizer or tokenizer is not None else None
    contents = read_checkpoint(located.checkpoint)
    model = model_section(contents, located)
    decoder = build_decoder(model, contents["state_dict"], located.checkpoint).to(device)
    if tok is not None and tok.vocab_size > decoder.vocab_size:
        raise UserError(
            f"tokenizer {tok.name} has {tok.vocab_size:,} ids but the model's vocabulary is {decoder.vocab_size:,}: "
            "it was not trained with this tokenizer (pass the run's own with --tokenizer)"
        )
    seq_len = (located.config.get("data") or {}).get("seq_len")
    step = contents.get("global_step")
    return LoadedModel(
        decoder=decoder,
        tokenizer=tok,
        checkpoint=located.checkpoint,
        run_dir=located.run_dir,
        model_config=model,
        seq_len=int(seq_len) if isinstance(seq_len, int) else None,
        global_step=int(step) if isinstance(step, int) else None,
    )


__all__ = [
    "LoadedModel",
    "Located",
    "build_decoder",
    "decoder_state_dict",
    "load_model",
    "locate",
    "model_section",
    "read_checkpoint",
    "run_tokenizer",
]
