"""Downstream evaluation of a lit_ffn checkpoint with lm-evaluation-harness (``pip install -e ".[eval]"``).

:func:`evaluate_checkpoint` is the library entry point (``lit_ffn evaluate`` and, later, ``lit_ffn ablate
--eval-tasks`` call it)::

    scores = evaluate_checkpoint("runs/q/SwiGLU/seed_0", ["arc_easy", "piqa"], limit=200)
    scores["arc_easy"]                   # {"acc": 0.41, "acc_stderr": 0.035, "acc_norm": 0.39, …, "n_samples": 200}
    accuracy(scores["arc_easy"])         # ("acc", 0.41): the accuracy-type metric of a task

The model is the checkpoint's own Decoder wrapped as an lm_eval LM
(:class:`~lit_ffn.inference.lm_eval_adapter.LitFFNLM`), run through ``lm_eval.simple_evaluate``.

Tasks are lm_eval task, group or tag names, or paths to task YAML files, plus the tasks of
``include_path`` (a directory of the user's own YAMLs, as ``lm_eval --include_path``).  When the include
path defines every requested name only it is indexed (lm_eval's ~14,700 built-in task configs take
~13 s to index on 2 cores); otherwise both are.  The standard tasks download their datasets from the
Hugging Face Hub on first use (then read them from ``HF_DATASETS_CACHE``); offline, copy the cache or
write a task YAML with ``dataset_path: json`` and ``dataset_kwargs: {data_files: …}`` (README).
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_ffn.errors import UserError, first_line
from lit_ffn.inference.loading import LoadedModel, load_model

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

INSTALL_HINT = 'pip install -e ".[eval]" (or pip install "lm-eval>=0.4,<0.5")'
#: accuracy-type metrics, in the order :func:`accuracy` prefers them
ACCURACY_METRICS = ("acc", "acc_norm", "exact_match")
#: lm_eval's result keys that are not metrics
_NOT_METRICS = ("alias", "name", "sample_len", "sample_count")


def require_lm_eval() -> None:
    """UserError naming the extra to install when lm-eval is missing."""
    if importlib.util.find_spec("lm_eval") is None:
        raise UserError(f"lit_ffn evaluate needs lm-evaluation-harness, which is not installed: {INSTALL_HINT}")


# ------------------------------------------------------------------ tasks
def task_manager(names: Sequence[str], include_path: str | Path | None = None) -> TaskManager:
    """An lm_eval TaskManager that knows every name in ``names``, indexing the built-ins only when needed."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        path = Path(include_path)
        if not path.is_dir():
            raise UserError(f"--include-path {include_path}: no such directory (it should hold task YAML files)")
        local = TaskManager(include_path=str(path), include_defaults=False)
        if all(name in local.all_tasks or _is_yaml(name) for name in names):
            return local
    manager = TaskManager(include_path=str(include_path) if include_path is not None else None)
    unknown = [name for name in names if name not in manager.all_tasks and not _is_yaml(name)]
    if unknown:
        raise UserError(_unknown_tasks_message(unknown, manager.all_tasks, include_path))
    return manager


def _is_yaml(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and Path(name).is_file()


def _unknown_tasks_message(unknown: Sequence[str], known: Sequence[str], include_path: str | Path | None) -> str:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3)
        parts.append(f"'{name}'" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    where = f" (with {include_path})" if include_path else ""
    return (
        f"unknown task {', '.join(parts)}: not among the {len(known):,} tasks, groups and tags lm_eval knows{where}; "
        "list them with `lm_eval ls tasks`, or give your own task YAMLs with --include-path DIR"
    )


def build_tasks(manager: TaskManager, names: Sequence[str]) -> list[Any]:
    """lm_eval Task/Group objects for ``names`` (one line naming the task when one cannot be built, e.g.
    its dataset cannot be downloaded)."""
    built: list[Any] = []
    for name in names:
        try:
            loaded = manager.load([name])
        except Exception as err:  # noqa: BLE001 - datasets, hub, jinja, YAML errors of every kind: name the task
            raise UserError(
                f"task {name}: lm_eval cannot load it: {' '.join(first_line(err).split())} (the standard tasks "
                "download their data from the Hugging Face Hub: offline, point a task YAML at a local copy, see "
                "the README's 'Evaluating' section)"
            ) from None
        groups, tasks = loaded.get("groups", {}), loaded["tasks"]
        if name in groups:
            built.append(groups[name])
        elif name in tasks:
            built.append(tasks[name])
        else:  # a tag or a YAML path: its tasks
            built.extend(tasks.values())
    return built


# ------------------------------------------------------------------ results
def flatten_results(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """lm_eval's ``results`` → ``{task: {metric: value}}``.

    ``"acc,none"`` becomes ``"acc"`` (the metric under no filter); a filtered metric keeps its filter,
    ``"exact_match,strict-match"`` → ``"exact_match[strict-match]"``; standard errors are
    ``"<metric>_stderr"``; ``n_samples`` is the number of documents scored."""
    flat: dict[str, dict[str, float]] = {}
    samples = results.get("n-samples", {})
    for task, values in results.get("results", {}).items():
        metrics: dict[str, float] = {}
        for key, value in values.items():
            if key in _NOT_METRICS or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, _, filter_name = key.partition(",")
            name = metric if filter_name in ("", "none") else f"{metric}[{filter_name}]"
            metrics[name] = float(value)
        count = samples.get(task, {}).get("effective")
        if count is not None:
            metrics["n_samples"] = float(count)
        flat[task] = metrics
    return flat


def accuracy(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The accuracy-type metric of one task's metrics: the first of :data:`ACCURACY_METRICS` present
    (also under a filter, e.g. ``exact_match[strict-match]``), or None (e.g. a perplexity-only task)."""
    for wanted in ACCURACY_METRICS:
        for name, value in metrics.items():
            if name == wanted or name.startswith(f"{wanted}["):
                return name, value
    return None


def format_table(scores: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per task and metric, with its standard error."""
    lines = ["| task | metric | value | ± stderr | n |", "|---|---|---:|---:|---:|"]
    for task, metrics in scores.items():
        n = metrics.get("n_samples")
        for name, value in metrics.items():
            if name == "n_samples" or name.endswith("_stderr") or "_stderr[" in name:
                continue
            stderr = metrics.get(name.replace("[", "_stderr[", 1) if "[" in name else f"{name}_stderr")
            shown = f"{stderr:.4f}" if isinstance(stderr, float) and stderr == stderr else ""
            lines.append(f"| {task} | {name} | {value:.4f} | {shown} | {int(n) if n is not None else ''} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ running
@dataclass
class Evaluation:
    """What one evaluation produced.

    Attributes:
        scores: ``{task: {metric: value}}`` (:func:`flatten_results`).
        settings: the arguments that decide the numbers (tasks, limit, few-shot, max_length, seed, …).
        raw: lm_eval's own result dict (``results``, ``configs``, ``versions``, ``n-samples``, …).
    """

    scores: dict[str, dict[str, float]]
    settings: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def evaluate_loaded(
    loaded: LoadedModel,
    tasks: Sequence[str],
    include_path: str | Path | None = None,
    limit: int | float | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    num_fewshot: int | None = None,
    max_length: int | None = None,
    seed: int = 0,
    bootstrap_iters: int = 1000,
    manager: TaskManager | None = None,
) -> Evaluation:
    """Run lm_eval's ``simple_evaluate`` on an already loaded model (see :func:`evaluate_checkpoint`)."""
    require_lm_eval()
    import lm_eval

    from lit_ffn.inference.lm_eval_adapter import LitFFNLM

    if loaded.tokenizer is None:
        raise UserError("evaluation needs the model's tokenizer: load it with need_tokenizer=True")
    names = list(dict.fromkeys(tasks))
    manager = manager if manager is not None else task_manager(names, include_path)
    built = build_tasks(manager, names)
    context = max_length or loaded.seq_len or 2048
    lm = LitFFNLM(loaded.decoder, loaded.tokenizer, max_length=context, batch_size=batch_size, device=device, seed=seed)
    raw = lm_eval.simple_evaluate(
        model=lm,
        tasks=built,
        task_manager=manager,
        num_fewshot=num_fewshot,
        limit=limit,
        bootstrap_iters=bootstrap_iters,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    settings = {
        "tasks": names,
        "include_path": str(include_path) if include_path is not None else None,
        "limit": limit,
        "num_fewshot": num_fewshot,
        "batch_size": batch_size,
        "max_length": context,
        "seed": seed,
        "bootstrap_iters": bootstrap_iters,
        "lm_eval_version": lm_eval.__version__,
    }
    return Evaluation(flatten_results(raw or {}), settings, raw or {})


def evaluate_checkpoint(
    ckpt_or_run_dir: str | Path,
    tasks: Sequence[str],
    include_path: str | Path | None = None,
    limit: int | float | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    tokenizer: str | None = None,
    num_fewshot: int | None = None,
    max_length: int | None = None,
    seed: int = 0,
    bootstrap_iters: int = 1000,
) -> dict[str, dict[str, float]]:
    """Evaluate a lit_ffn checkpoint on lm_eval tasks: ``{task: {metric: value}}``.

    Args:
        ckpt_or_run_dir: a checkpoint file, a sharded checkpoint directory or a run directory
            (:func:`~lit_ffn.inference.loading.load_model`).
        tasks: lm_eval task / group / tag names or task YAML paths; groups report their subtasks too.
        include_path: a directory of task YAMLs of your own.
        limit: documents per task (an int) or a fraction of each task (< 1); None: all.
        batch_size: requests per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, …
        tokenizer: override the run's tokenizer (needed for a checkpoint outside its run directory).
        num_fewshot: few-shot examples (None: each task's default, 0 for most).
        max_length: the longest model input in tokens (default: the run's training ``data.seq_len``, else 2048).
        seed: seeds lm_eval's sampling of few-shot examples and documents, and generation that samples.
        bootstrap_iters: bootstrap resamples for the standard errors of non-mean metrics (0: none).

    Returns:
        ``{task: {metric: value}}`` for every task and group evaluated, e.g.
        ``{"arc_easy": {"acc": 0.41, "acc_stderr": 0.035, "acc_norm": 0.39, "acc_norm_stderr": 0.034,
        "n_samples": 200.0}}``: metric names without lm_eval's ``,none`` filter suffix, ``<metric>_stderr``
        for standard errors, ``n_samples`` the documents scored.  :func:`accuracy` picks a task's accuracy.

    Raises:
        UserError: lm-eval not installed, an unknown task, a task whose data cannot be loaded, or any
            checkpoint problem :func:`~lit_ffn.inference.loading.load_model` reports.
    """
    require_lm_eval()
    manager = task_manager(list(dict.fromkeys(tasks)), include_path)  # unknown names fail before the model loads
    loaded = load_model(ckpt_or_run_dir, tokenizer=tokenizer, device=device)
    evaluation = evaluate_loaded(
        loaded,
        tasks,
        include_path=include_path,
        limit=limit,
        batch_size=batch_size,
        device=device,
        num_fewshot=num_fewshot,
        max_length=max_length,
        seed=seed,
        bootstrap_iters=bootstrap_iters,
        manager=manager,
    )
    return evaluation.scores


def quiet_lm_eval() -> None:
    """lm_eval logs every request type and task at INFO: keep its warnings only."""
    logging.getLogger("lm_eval").setLevel(logging.WARNING)


__all__ = [
    "ACCURACY_METRICS",
    "INSTALL_HINT",
    "Evaluation",
    "accuracy",
    "build_tasks",
    "evaluate_checkpoint",
    "evaluate_loaded",
    "flatten_results",
    "format_table",
    "quiet_lm_eval",
    "require_lm_eval",
    "task_manager",
]
