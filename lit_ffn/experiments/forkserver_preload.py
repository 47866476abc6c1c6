"""What the ``lit_ffn ablate --workers`` fork server imports, once, before it forks any worker.

``multiprocessing.set_forkserver_preload`` skips a module that raises ``ImportError`` but lets any other
exception end the fork server (and with it every run of the pool); a third-party package that fails to
import for another reason (a broken optional dependency, say) must cost a worker its head start, not the
study. So the fork server preloads this one module, which imports each of :data:`MODULES` and passes over
any that fails: the worker then imports it itself (and reports the error, if it needs it).
"""

from __future__ import annotations

import importlib

#: torch, Lightning, jsonargparse, litdata, the lit_ffn modules a fit and its final evaluation use, and what
#: Lightning imports while it sets a fit up (TensorBoard's writer; s3fs and gcsfs, which it imports to ask
#: whether a path is object storage) — about 11 s of each run's start on the reference CPU.
MODULES = (
    "lit_ffn.experiments.worker",
    "lit_ffn.cli",
    "lit_ffn.training.lightning_cli",
    "lit_ffn.training.module",
    "lit_ffn.training.config",
    "lit_ffn.training.logger",
    "lit_ffn.callbacks",
    "lit_ffn.data.datamodule",
    "lit_ffn.data.prepare.cli",
    "lit_ffn.distributed.strategy",
    "lit_ffn.experiments.final_eval",
    "torch.utils.tensorboard",
    "s3fs",
    "gcsfs",
)


def preload(modules: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Import each of ``modules``; returns those that failed, with the error's first line."""
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - see the module docstring: a worker imports it again itself
            failed[name] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    return failed


#: The modules that failed to import in this process (the fork server: it imports this module).
FAILED = preload(MODULES)
