"""Data: the on-disk token format (``format.py``), the DataModule that streams it
(``datamodule.py``), tokenizers (``tokenizer.py``), the offline quickstart corpus
(``corpus.py``) and the ``lit_ffn prepare`` writer (``prepare/``).

Importing this package does not import the writer: readers depend on ``format.py`` only.
"""

from lit_ffn.data.datamodule import ResumableLoader, TokenDataModule, ValBlocks
from lit_ffn.data.format import DataLocation, DatasetError, read_meta, resolve_data_dir

__all__ = [
    "DataLocation",
    "DatasetError",
    "ResumableLoader",
    "TokenDataModule",
    "ValBlocks",
    "read_meta",
    "resolve_data_dir",
]
