"""The offline quickstart corpus: English prose that ships with every Python.

Two sources, both read from the running interpreter's standard library, so nothing is downloaded:

* ``pydoc_data.topics``: the reference documentation topics behind ``help("if")`` etc.;
* the docstrings of the standard library's modules, classes and functions (those longer than
  ``MIN_DOCSTRING_CHARS``), extracted by *parsing* the ``.py`` sources with :mod:`ast`.  Modules are
  never imported: some have side effects on import (``antigravity`` opens a web browser).

Each topic and each docstring is one document.  The order is deterministic (sorted files, source
order within a file) and exact duplicates are dropped, so a given Python version always yields the
same corpus (2,312 documents and 395,746 Qwen3 tokens on Python 3.11.7).

:func:`write_quickstart_parquet` writes it with FineWeb's schema; :func:`ensure_quickstart_dataset`
turns it into a prepared dataset with the same :func:`~lit_ffn.data.prepare.prepare_dataset` used for
FineWeb, and :func:`ensure_quickstart_dataset_isolated` does the same in a fresh interpreter
(what ``TokenDataModule.prepare_data`` uses: a trainer process should not fork).

    python -m lit_ffn.data.corpus OUT.parquet         # the corpus as a FineWeb-schema parquet file
    python -m lit_ffn.data.corpus --ensure DIR        # the prepared quickstart dataset, unless DIR has one
"""

from __future__ import annotations

import ast
import functools
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lit_ffn.data.prepare import DatasetError, OutputExistsError, check_output, prepare_dataset, read_meta
from lit_ffn.errors import UserError, run_tool

__all__ = [
    "Document",
    "ensure_quickstart_dataset",
    "ensure_quickstart_dataset_isolated",
    "pydoc_topics",
    "quickstart_documents",
    "stdlib_docstrings",
    "write_quickstart_parquet",
]

MIN_DOCSTRING_CHARS = 200
#: Vocabularies at least this large get the Qwen3 tokenizer (151,669 ids; Qwen3 models pad to 151,936);
#: smaller ones a byte-level BPE of exactly that size trained on the quickstart's training split.
QWEN3_VOCAB = 151_669
QUICKSTART_VAL_FRACTION = 0.05
QUICKSTART_CHUNK_BYTES = 256 * 1024  # several chunks per split, so loader workers share the work
# Directories of the standard library that hold tests, demos, bundled wheels or third-party code.
_SKIPPED_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "dist-packages",
        "pydoc_data",
        "__pycache__",
        "lib-dynload",
    }
)
_DOCSTRING_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_BLOCK_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")
_BLOCK_NODES = (ast.stmt, ast.excepthandler, ast.match_case)


@dataclass(frozen=True)
class Document:
    """One document of the corpus and where it comes from (``Lib/…`` path, CPython source URL)."""

    text: str
    file_path: str
    url: str


@functools.lru_cache(maxsize=1)
def quickstart_documents() -> tuple[Document, ...]:
    """The pydoc topics, then the stdlib docstrings; exact duplicates dropped, order deterministic.

    Cached: parsing the standard library takes a few seconds and its result never changes.
    """
    seen: set[str] = set()
    documents = []
    for document in (*pydoc_topics(), *stdlib_docstrings()):
        if document.text not in seen:
            seen.add(document.text)
            documents.append(document)
    return tuple(documents)


def pydoc_topics() -> Iterator[Document]:
    """The documentation topics of ``pydoc_data.topics``, sorted by topic name."""
    from pydoc_data.topics import topics  # a data-only module: importing it runs nothing else

    for name in sorted(topics):
        text = topics[name].strip()
        if text:
            yield Document(text, "Lib/pydoc_data/topics.py", f"{_source_url('pydoc_data/topics.py')}#{name}")


def stdlib_docstrings(min_chars: int = MIN_DOCSTRING_CHARS, root: Path | None = None) -> Iterator[Document]:
    """Docstrings longer than ``min_chars`` of the standard library's sources, in source order."""
    root = Path(root or sysconfig.get_path("stdlib"))
    for path in _stdlib_sources(root):
        relative = path.relative_to(root).as_posix()
        for lineno, text in _docstrings(path):
            if len(text) > min_chars:
                yield Document(text, f"Lib/{relative}", f"{_source_url(relative)}#L{lineno}")


def _stdlib_sources(root: Path) -> Iterator[Path]:
    """``.py`` files under ``root`` in sorted order, skipping test, demo and third-party folders."""
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            name for name in subdirectories if name not in _SKIPPED_DIRS and not name.startswith((".", "config-"))
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(directory, name)


def _docstrings(path: Path) -> list[tuple[int, str]]:
    """``(line, cleaned docstring)`` of a source file's module, classes and functions."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # e.g. invalid escapes on newer Pythons
            tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):  # e.g. lib2to3 test data written in Python 2
        return []
    found = []
    for node in _statements(tree):
        if isinstance(node, _DOCSTRING_OWNERS):
            text = ast.get_docstring(node, clean=True)
            if text and text.strip():
                found.append((getattr(node, "lineno", 0), text.strip()))
    return sorted(found, key=lambda item: item[0])


def _statements(tree: ast.Module) -> Iterator[ast.AST]:
    """The module and every statement in it, however nested in blocks.

    Docstrings belong to statements only, so unlike :func:`ast.walk` this never descends into
    expressions: it visits a tenth of the nodes.
    """
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        for name in _BLOCK_FIELDS:
            block = getattr(node, name, None)
            if isinstance(block, list):
                stack.extend(child for child in block if isinstance(child, _BLOCK_NODES))


def _source_url(relative: str) -> str:
    return f"https://github.com/python/cpython/blob/v{platform.python_version()}/Lib/{relative}"


def write_quickstart_parquet(path: str | os.PathLike[str], tokenizer: str = "qwen3") -> int:
    """Write the corpus to ``path`` as a FineWeb-schema parquet file; returns the number of documents.

    Columns as in FineWeb: ``text, id, dump, url, date, file_path, language, language_score,
    token_count``.  ``id`` is a UUID derived from the URL, ``dump`` names the Python release, ``date``
    is the interpreter's build date and ``token_count`` counts tokens of ``tokenizer`` (FineWeb
    counts GPT-2 tokens, which are not available offline).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lit_ffn.data.tokenizer import load_tokenizer

    documents = quickstart_documents()
    texts = [document.text for document in documents]
    token_counts = [len(ids) for ids in load_tokenizer(tokenizer).encode_batch(texts)]
    rows = len(documents)
    table = pa.table(
        {
            "text": pa.array(texts, pa.string()),
            "id": pa.array([f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, d.url)}>" for d in documents], pa.string()),
            "dump": pa.array([f"python-{platform.python_version()}-stdlib"] * rows, pa.string()),
            "url": pa.array([document.url for document in documents], pa.string()),
            "date": pa.array([_python_build_date()] * rows, pa.string()),
            "file_path": pa.array([document.file_path for document in documents], pa.string()),
            "language": pa.array(["en"] * rows, pa.string()),
            "language_score": pa.array([1.0] * rows, pa.float64()),
            "token_count": pa.array(token_counts, pa.int64()),
        }
    )
    pq.write_table(table, str(path), row_group_size=256)
    return rows


def _python_build_date() -> str:
    """The interpreter's build date as FineWeb writes dates (``2023-12-05T00:00:00Z``), or ``""``."""
    raw = " ".join(platform.python_build()[1].split())
    for pattern in ("%b %d %Y %H:%M:%S", "%b %d %Y"):
        try:
            return datetime.strptime(raw, pattern).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            continue
    return ""


def quickstart_vocab(model_vocab_size: int | None) -> int | None:
    """The ``train_vocab_size`` of a quickstart dataset for a model of ``model_vocab_size`` ids: None (Qwen3's
    tokenizer) for ``None`` or ≥ 151,669, else a byte-level BPE of exactly ``model_vocab_size`` ids."""
    return None if model_vocab_size is None or model_vocab_size >= QWEN3_VOCAB else model_vocab_size


def ensure_quickstart_dataset(
    data_dir: str | os.PathLike[str],
    tokenizer: str = "qwen3",
    val_fraction: float = QUICKSTART_VAL_FRACTION,
    train_vocab_size: int | None = None,
) -> dict[str, Any]:
    """Return the meta of the dataset at ``data_dir``, building the quickstart corpus there if absent.

    ``train_vocab_size`` builds it with a byte-level BPE of that many ids trained on its training split
    (``tokenizer`` is then ignored).  An existing complete dataset is left as it is, whatever its corpus.
    Takes a few seconds.
    """
    try:
        return read_meta(data_dir)
    except DatasetError as missing:
        try:
            check_output(Path(data_dir).expanduser().absolute(), overwrite=False)  # before the corpus is built
        except OutputExistsError:
            raise missing from None  # e.g. an incomplete dataset: read_meta says what to do
    with tempfile.TemporaryDirectory(prefix="lit_ffn-quickstart-") as tmp:
        parquet = Path(tmp) / "quickstart.parquet"
        documents = write_quickstart_parquet(parquet, "qwen3" if train_vocab_size else tokenizer)
        description = (
            f"lit_ffn quickstart: pydoc_data.topics and standard-library docstrings of Python "
            f"{platform.python_version()} ({documents} documents)"
        )
        extra = {"corpus": description, "inputs": [{"path": "lit_ffn.data.corpus", "bytes": parquet.stat().st_size}]}
        try:
            return prepare_dataset(
                str(parquet),
                data_dir,
                None if train_vocab_size else tokenizer,
                train_vocab_size=train_vocab_size,
                val_fraction=val_fraction,
                chunk_bytes=QUICKSTART_CHUNK_BYTES,
                extra_meta=extra,
            )
        except OutputExistsError:  # another process built it meanwhile
            return read_meta(data_dir)


def ensure_quickstart_dataset_isolated(
    data_dir: str | os.PathLike[str], tokenizer: str = "qwen3", train_vocab_size: int | None = None
) -> dict[str, Any]:
    """:func:`ensure_quickstart_dataset` run by ``python -m lit_ffn.data.corpus --ensure`` in a fresh interpreter.

    Why a child process: ``prepare`` forks its tokenizer workers (spawned ones would re-import torch,
    seconds each).  A process that already runs threads (a Trainer, a notebook, a logger) should not
    fork: the child inherits every lock another thread held at that moment.  The fresh interpreter is
    single-threaded when it forks, and this process's multiprocessing settings stay as they were.

    Raises:
        UserError: the child reported a user error (its one line), e.g. an unusable ``data_dir``.
        RuntimeError: the child failed otherwise (the end of its stderr is in the message).
    """
    try:
        return read_meta(data_dir)
    except DatasetError:
        pass
    package_root = str(Path(__file__).resolve().parents[2])  # lit_ffn importable even when not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lit_ffn.data.corpus", "--ensure", str(data_dir), "--tokenizer", tokenizer),
            *(("--vocab-size", str(train_vocab_size)) if train_vocab_size else ()),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode == 2:
        raise UserError(result.stderr.strip().splitlines()[-1].removeprefix(f"{_PROG}: error: "))
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-20:])
        raise RuntimeError(
            f"building the quickstart dataset in {data_dir} failed (exit code {result.returncode}):\n{tail}"
        )
    return read_meta(data_dir)


_PROG = "python -m lit_ffn.data.corpus"


def main(argv: list[str] | None = None) -> int:
    """``python -m lit_ffn.data.corpus OUT.parquet`` or ``--ensure DIR [--tokenizer T]``; user errors exit 2."""
    import argparse

    parser = argparse.ArgumentParser(prog=_PROG, description="the offline quickstart corpus")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("parquet", nargs="?", help="write the corpus to this FineWeb-schema parquet file")
    target.add_argument("--ensure", metavar="DIR", help="prepare the quickstart dataset in DIR unless it has one")
    parser.add_argument("--tokenizer", default="qwen3")
    parser.add_argument("--vocab-size", type=int, help="train a byte-level BPE of this size instead (--ensure)")

    def body() -> None:
        args = parser.parse_args(argv)
        if args.ensure:
            meta = ensure_quickstart_dataset(args.ensure, args.tokenizer, train_vocab_size=args.vocab_size)
            print(f"{args.ensure}: {meta.get('corpus', 'an existing dataset')}")
        else:
            print(write_quickstart_parquet(args.parquet, args.tokenizer), "documents written to", args.parquet)

    return run_tool(_PROG, body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
