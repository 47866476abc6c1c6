"""``lit_ffn prepare``: raw text → tokenized litdata chunks + ``meta.json``, one module per stage.

``sources`` (inputs → work items) → ``documents`` (rows → clean text, the hash split) → ``workers``
(tokenize inside litdata's ``optimize``) → ``publish`` (staging directory, one atomic rename) —
driven by ``pipeline.prepare_dataset``; ``inspect`` decodes a finished dataset, ``cli`` is the
command line.  The on-disk format itself is :mod:`lit_ffn.data.format`.
"""

from lit_ffn.data.format import DTYPE, FORMAT, FORMAT_VERSION, SPLITS, DatasetError, read_meta
from lit_ffn.data.prepare.cli import main
from lit_ffn.data.prepare.documents import default_val_fraction, is_val, val_threshold
from lit_ffn.data.prepare.errors import OutputExistsError, PrepareError
from lit_ffn.data.prepare.inspect import inspect_dataset
from lit_ffn.data.prepare.pipeline import prepare_dataset
from lit_ffn.data.prepare.publish import check_output, cleanup_leftovers
from lit_ffn.data.prepare.sources import resolve_inputs
from lit_ffn.data.prepare.workers import DEFAULT_START_METHOD, PAUSE_ENV

__all__ = [
    "DEFAULT_START_METHOD",
    "DTYPE",
    "FORMAT",
    "FORMAT_VERSION",
    "PAUSE_ENV",
    "SPLITS",
    "DatasetError",
    "OutputExistsError",
    "PrepareError",
    "check_output",
    "cleanup_leftovers",
    "default_val_fraction",
    "inspect_dataset",
    "is_val",
    "main",
    "prepare_dataset",
    "read_meta",
    "resolve_inputs",
    "val_threshold",
]
