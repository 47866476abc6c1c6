"""The ``trust_remote_code`` files of an export whose FFN a stock transformers Qwen3 cannot hold.

transformers loads an architecture it does not ship from Python files inside the model directory:
``config.json``'s ``auto_map`` names a config class and a model class as ``<file>.<Class>``, and
``from_pretrained(dir, trust_remote_code=True)`` copies those files (and, recursively, the files they
import with ``from .<file> import …``) into its modules cache and imports them.  lit_ffn writes

* ``configuration_lit_ffn.py`` — ``LitFFNQwen3Config``: ``Qwen3Config`` under its own ``model_type``
  (so a load without ``trust_remote_code`` fails instead of building a stock ``Qwen3MLP``), plus
  ``ffn_init_args``, the FFN's constructor arguments besides the width;
* ``modeling_lit_ffn.py`` — ``LitFFNQwen3ForCausalLM``: ``Qwen3ForCausalLM`` whose every
  ``model.layers[i].mlp`` is ``FFN(hidden_size, **ffn_init_args)``;
* the FFN's own source: the *whole module* that defines it, and every module it imports from lit_ffn
  or from the FFN's own top-level package, each copied verbatim as ``<dotted_name_with_underscores>.py``
  with only those import statements rewritten to relative ones (``from lit_ffn.ffn.base import X`` →
  ``from .lit_ffn_ffn_base import X``).

Why whole modules copied by source (not a modeling file written by hand, nor the class alone through
``inspect.getsource``): the shipped code *is* lit_ffn's (or the user's) definition, so there is one
source of truth and nothing to keep equal by hand; and a class rarely stands alone — it uses its
module's helpers, constants and imports, which a per-object copy would have to chase name by name.

What may be shipped (:class:`SourceBundle` refuses everything else with one :class:`UserError` line):
the runtime imports of the shipped files are the standard library, ``torch`` and ``transformers``
only (never lit_ffn: the directory must work where lit_ffn is not installed); a module is copied
only if it is Python source (not ``__main__``, not a C extension) inside lit_ffn or the FFN's own
top-level package; any other package (numpy, yaml, …) is refused rather than copied, as is
``import pkg.module`` (only ``from pkg.module import name`` can be rewritten), a star import, an
import that shares its line with other code, and a class defined inside a function.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_ffn.errors import UserError

#: what the shipped code may import at run time, besides the standard library
RUNTIME_PACKAGES = frozenset({"torch", "transformers"})
CONFIG_FILE = "configuration_lit_ffn"
MODELING_FILE = "modeling_lit_ffn"
CONFIG_CLASS = "LitFFNQwen3Config"
MODEL_CLASS = "LitFFNQwen3ForCausalLM"
MODEL_TYPE = "lit_ffn_qwen3"
#: the name the modeling file gives the FFN class (or factory) it imports
FFN_ALIAS = "ExportedFFN"
#: packages whose modules may be copied into an export besides the FFN's own top-level package
SHIPPABLE_PACKAGES = frozenset({"lit_ffn"})
_HOW = "the remote code of an export may import only torch, transformers and the standard library"


def _runtime_import(module: str) -> bool:
    top = module.split(".")[0]
    return top in RUNTIME_PACKAGES or top in sys.stdlib_module_names


@dataclass
class SourceBundle:
    """The Python files that define ``subject`` for a directory without lit_ffn: ``{stem: source}``.

    Built by :meth:`for_object`; ``entry`` is ``(stem, name)`` such that ``from .<stem> import <name>``
    gives the object."""

    subject: str
    packages: frozenset[str]
    files: dict[str, str] = field(default_factory=dict)
    stems: dict[str, str] = field(default_factory=dict)  # dotted module name → file stem
    entry: tuple[str, str] = ("", "")

    @classmethod
    def for_object(cls, obj: Any) -> SourceBundle:
        """Bundle the module defining ``obj`` (a module-level class or function) and what it imports."""
        qualname = getattr(obj, "__qualname__", type(obj).__qualname__)
        module_name = getattr(obj, "__module__", None) or "?"
        subject = f"{module_name}.{qualname}"
        if module_name == "__main__":
            raise UserError(
                f"cannot export FFN {subject}: it is defined in __main__ (a script or notebook), whose source "
                "cannot be shipped; move the class into a module of its own (e.g. my_ffn.py next to your script) "
                "and build the model from it"
            )
        if qualname == "<lambda>" or "<lambda>" in qualname:
            raise UserError(f"cannot export FFN {subject}: it is a lambda; use a module-level class instead")
        if "<locals>" in qualname:
            raise UserError(
                f"cannot export FFN {subject}: it is defined inside a function (a local class), so it cannot be "
                "imported by name; move it to the top level of its module"
            )
        if "." in qualname:
            raise UserError(
                f"cannot export FFN {subject}: it is nested in a class; move it to the top level of its module"
            )
        module = sys.modules.get(module_name)
        if module is None or getattr(module, qualname, None) is not obj:
            raise UserError(f"cannot export FFN {subject}: {module_name}.{qualname} does not name it")
        if _runtime_import(module_name):  # e.g. a torch module: imported, not copied
            return cls(subject, frozenset(), entry=("", f"{module_name}:{qualname}"))
        bundle = cls(subject, SHIPPABLE_PACKAGES | {module_name.split(".")[0]})
        bundle.entry = bundle._defined_in(module_name, qualname)
        return bundle

    def import_line(self, alias: str) -> str:
        """The statement that binds the bundled object to ``alias`` in a file next to the bundle's files."""
        return _import_line(self.entry, alias)

    # ------------------------------------------------------------------ resolving names
    def _module_source(self, module_name: str) -> tuple[str, str]:
        """``(path, source)`` of a module that may be shipped (UserError otherwise)."""
        if module_name == "__main__":
            raise UserError(f"cannot export FFN {self.subject}: it needs code from __main__, which cannot be shipped")
        if module_name.split(".")[0] not in self.packages:
            raise UserError(f"cannot export FFN {self.subject}: it depends on {module_name} ({_HOW})")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UserError(f"cannot export FFN {self.subject}: importing {module_name} fails ({err})") from None
        try:
            path = inspect.getsourcefile(module)
        except TypeError:  # a built-in module
            path = None
        if path is None or not path.endswith(".py"):
            raise UserError(
                f"cannot export FFN {self.subject}: {module_name} is not Python source (a compiled extension?), "
                "so it cannot be copied into the export"
            )
        return path, Path(path).read_text(encoding="utf-8")

    def _defined_in(self, module_name: str, name: str, seen: frozenset[str] = frozenset()) -> tuple[str, str]:
        """``(stem, name)`` to import ``name`` of ``module_name`` from, following re-exports
        (``lit_ffn.ffn`` → ``lit_ffn.ffn.glu``) so that a package's ``__init__`` is not shipped; the
        defining module is shipped.  A name re-exported from a runtime package gives ``("", "module:name")``."""
        key = f"{module_name}:{name}"
        if key in seen:
            raise UserError(f"cannot export FFN {self.subject}: {name} is imported in a cycle through {module_name}")
        path, source = self._module_source(module_name)
        found = _top_level_binding(ast.parse(source, path), name)
        if found is None:
            try:
                submodule = importlib.util.find_spec(f"{module_name}.{name}") is not None
            except ImportError:  # module_name is not a package
                submodule = False
            if submodule:
                raise UserError(
                    f"cannot export FFN {self.subject}: it imports the module {module_name}.{name} as a name; "
                    f"import what it needs from it instead (from {module_name}.{name} import …)"
                )
            raise UserError(f"cannot export FFN {self.subject}: cannot find where {module_name}.{name} is defined")
        if isinstance(found, ast.ImportFrom):
            source_module = _absolute(found, module_name, path)
            original = next(alias.name for alias in found.names if (alias.asname or alias.name) == name)
            if _runtime_import(source_module):
                return "", f"{source_module}:{original}"
            return self._defined_in(source_module, original, seen | {key})
        if isinstance(found, ast.Import):
            raise UserError(
                f"cannot export FFN {self.subject}: {module_name} binds {name} with `import …`; "
                "only `from package.module import name` imports can be rewritten"
            )
        return self._ship(module_name, path, source), name

    # ------------------------------------------------------------------ copying
    def _ship(self, module_name: str, path: str, source: str) -> str:
        """Copy ``module_name`` into the bundle (once) with its lit_ffn/own-package imports made relative."""
        if module_name in self.stems:
            return self.stems[module_name]
        stem = module_name.replace(".", "_")
        if stem in self.files or stem in (CONFIG_FILE, MODELING_FILE):
            raise UserError(f"cannot export FFN {self.subject}: two modules would both be written as {stem}.py")
        self.stems[module_name] = stem
        self.files[stem] = ""  # claimed: an import cycle back to this module finds it
        lines = source.splitlines(keepends=True)
        edits = []
        for node in ast.walk(ast.parse(source, path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                replacement = self._rewrite(node, module_name, path)
                if replacement is not None:
                    edits.append((node, replacement))
        for node, replacement in sorted(edits, key=lambda edit: edit[0].lineno, reverse=True):
            start, end = node.lineno - 1, (node.end_lineno or node.lineno) - 1
            # ast's column offsets count UTF-8 bytes
            indent = lines[start].encode()[: node.col_offset].decode()
            rest = lines[end].encode()[node.end_col_offset or 0 :].decode()
            if indent.strip() or (rest.strip() not in ("", ";") and not rest.lstrip().startswith("#")):
                raise UserError(
                    f"cannot export FFN {self.subject}: {path}:{node.lineno} has an import sharing its line with "
                    "other code; put the import on a line of its own"
                )
            lines[start : end + 1] = [indent + line + "\n" for line in replacement]
        header = (
            f"# Copied by `lit_ffn export` from {module_name} ({Path(path).name}); "
            "its imports of lit_ffn and of its own package made relative.\n"
        )
        self.files[stem] = header + "".join(lines)
        return stem

    def _rewrite(self, node: ast.Import | ast.ImportFrom, module_name: str, path: str) -> list[str] | None:
        """The replacement lines of an import statement (None: keep it as it is)."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _runtime_import(alias.name):
                    if alias.name.split(".")[0] not in self.packages:
                        raise UserError(
                            f"cannot export FFN {self.subject}: {module_name} imports {alias.name} ({_HOW})"
                        )
                    raise UserError(
                        f"cannot export FFN {self.subject}: {module_name} imports {alias.name} with `import …`; "
                        f"write `from {alias.name} import <name>` so that it can be shipped"
                    )
            return None
        source_module = _absolute(node, module_name, path)
        if _runtime_import(source_module):
            return None
        grouped: dict[tuple[str, str], list[str]] = {}  # one statement per source module
        for alias in node.names:
            if alias.name == "*":
                raise UserError(
                    f"cannot export FFN {self.subject}: {module_name} has `from {source_module} import *`; "
                    "import the names it uses"
                )
            stem, name = self._defined_in(source_module, alias.name)
            module = name.split(":")[0] if not stem else ""
            grouped.setdefault((stem, module), []).append(_as(name.split(":")[-1], alias.asname or alias.name))
        return [
            f"from .{stem} import {', '.join(names)}" if stem else f"from {module} import {', '.join(names)}"
            for (stem, module), names in grouped.items()
        ]


def _import_line(entry: tuple[str, str], alias: str) -> str:
    """``from .<stem> import <name> as <alias>``, or from a runtime module for ``("", "module:name")``."""
    stem, name = entry
    if not stem:
        module, name = name.split(":")
        return f"from {module} import {_as(name, alias)}"
    return f"from .{stem} import {_as(name, alias)}"


def _as(name: str, bound: str) -> str:
    return name if name == bound else f"{name} as {bound}"


def _absolute(node: ast.ImportFrom, module_name: str, path: str) -> str:
    """The absolute module of ``from <node.module> import …`` written in ``module_name``."""
    if not node.level:
        return node.module or ""
    package = module_name if Path(path).name == "__init__.py" else module_name.rpartition(".")[0]
    return importlib.util.resolve_name("." * node.level + (node.module or ""), package)


def _top_level_binding(tree: ast.Module, name: str) -> ast.stmt | None:
    """The module-level statement (also inside module-level ``if``/``try``) that binds ``name``."""
    found = None
    pending = list(tree.body)
    while pending:
        stmt = pending.pop(0)
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            found = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                found = stmt
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in stmt.names):
                found = stmt
        elif isinstance(stmt, (ast.If, ast.Try)):
            pending[:0] = [*stmt.body, *getattr(stmt, "orelse", []), *getattr(stmt, "finalbody", [])]
            for handler in getattr(stmt, "handlers", []):
                pending[:0] = handler.body
    return found


# ------------------------------------------------------------------ the two transformers files
def code_digest(files: dict[str, str]) -> str:
    """sha256 of the model's Python files (``{stem: source}``), in a stable order."""
    digest = hashlib.sha256()
    for stem in sorted(files):
        digest.update(f"{stem}\0{files[stem]}\0".encode())
    return digest.hexdigest()


def configuration_source(modeling_digest: str) -> str:
    """``configuration_lit_ffn.py``: Qwen3Config under lit_ffn's ``model_type``.

    The file names the :func:`code_digest` of the modeling files because transformers maps a config
    *class* to the model class first loaded with it (``AutoModelForCausalLM.register``) and keys its
    modules cache by the directory's name and this file's bytes: were this file the same in two exports
    of different FFNs (say two directories called ``exported``), the second load in a process would
    build the first export's model."""
    return textwrap.dedent(
        f'''\
        """Configuration of a lit_ffn export: a Qwen3 whose MLP is the FFN of modeling_lit_ffn.py.

        Written by `lit_ffn export`.  Every field is Qwen3Config's, plus ``ffn_init_args`` (the FFN's
        constructor arguments besides the width) and ``ffn_class_path`` (where the FFN came from, for
        the record).  ``intermediate_size`` and ``hidden_act`` only size the stock Qwen3MLP that the
        model builds and then replaces.  Load with ``trust_remote_code=True``.
        """

        from transformers import Qwen3Config

        #: sha256 of the modeling files this configuration belongs to: one config class per model code
        MODELING_CODE_SHA256 = "{modeling_digest}"


        class {CONFIG_CLASS}(Qwen3Config):
            model_type = "{MODEL_TYPE}"


        __all__ = ["{CONFIG_CLASS}"]
        '''
    )


def modeling_source(bundle: SourceBundle, description: str) -> str:
    """``modeling_lit_ffn.py``: Qwen3ForCausalLM with each layer's MLP replaced by the bundled FFN."""
    stem = bundle.entry[0]
    origin = f"= {bundle.subject}, whose module is copied as {stem}.py" if stem else f"= {bundle.subject}"
    return textwrap.dedent(
        f'''\
        """Qwen3ForCausalLM whose every MLP is {description}: written by `lit_ffn export`.

        The decoder is transformers' Qwen3 (RMSNorm, GQA attention with q/k RMSNorm, RoPE), which lit_ffn's
        decoder equals; only ``model.layers[i].mlp`` differs: ``FFN(hidden_size, **ffn_init_args)``, with FFN
        {origin}.
        Shapes: the MLP maps hidden states ``(batch, seq, hidden_size)`` to the same shape.
        Depends on torch and transformers only.
        """

        from torch import nn
        from transformers import Qwen3ForCausalLM

        from .{CONFIG_FILE} import {CONFIG_CLASS}
        {bundle.import_line(FFN_ALIAS)}


        def build_ffn(config: {CONFIG_CLASS}) -> nn.Module:
            """One layer's FFN: ``(..., hidden_size) -> (..., hidden_size)``."""
            return {FFN_ALIAS}(config.hidden_size, **(getattr(config, "ffn_init_args", None) or {{}}))


        class {MODEL_CLASS}(Qwen3ForCausalLM):
            config_class = {CONFIG_CLASS}

            def __init__(self, config: {CONFIG_CLASS}) -> None:
                super().__init__(config)
                for layer in self.model.layers:  # the stock Qwen3MLP built above is replaced
                    layer.mlp = build_ffn(config)
                self.post_init()


        __all__ = ["{MODEL_CLASS}"]
        '''
    )


def json_init_args(subject: str, init_args: dict[str, Any]) -> dict[str, Any]:
    """``init_args`` if config.json can hold them unchanged (UserError otherwise)."""
    try:
        same = json.loads(json.dumps(init_args)) == init_args
    except (TypeError, ValueError):
        same = False
    if not same:
        raise UserError(
            f"cannot export FFN {subject}: its init arguments {init_args!r} are not plain JSON data "
            "(numbers, strings, booleans, lists, mappings), which config.json must hold"
        )
    return init_args


__all__ = [
    "CONFIG_CLASS",
    "CONFIG_FILE",
    "MODELING_FILE",
    "MODEL_CLASS",
    "MODEL_TYPE",
    "RUNTIME_PACKAGES",
    "SourceBundle",
    "code_digest",
    "configuration_source",
    "json_init_args",
    "modeling_source",
]
