"""``lit_ffn evaluate``: lm_eval on local tasks the tests write, checked against direct Decoder computations."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance

from lit_ffn.cli import main
from lit_ffn.errors import UserError
from lit_ffn.inference.evaluate import accuracy, evaluate_checkpoint, flatten_results, task_manager
from lit_ffn.inference.generate import generate
from lit_ffn.inference.lm_eval_adapter import LitFFNLM
from lit_ffn.inference.loading import LoadedModel, load_model
from tests.inference.conftest import MEMORIZED, Memorized, one_line_error

CHOICE_DOCS = [
    {"question": "A list is a", "choices": [" mutable sequence", " green stone", " loud"], "label": 0},
    {"question": "typically used to store", "choices": [" water", " collections"], "label": 1},
    {"question": "The list type is", "choices": [" mutable", " immutable"], "label": 0},
]
GEN_DOCS = [{"question": "A list is a", "answer": " mutable sequence"}, {"question": "A tuple", "answer": " is"}]
TEXT_DOCS = [{"text": MEMORIZED}, {"text": "Tuples are immutable sequences."}]
#: documents in the Hub's ai2_arc format, for the README's local ARC-Easy task
ARC_DOCS = [
    {"question": "What is a list?", "choices": {"text": ["mutable", "green"], "label": ["A", "B"]}, "answerKey": "A"},
    {
        "question": "What is a tuple?",
        "choices": {"text": ["loud", "immutable", "x"], "label": ["1", "2", "3"]},
        "answerKey": "2",
    },
]


def _task(directory: Path, name: str, docs: list[dict], **config: object) -> None:
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    spec = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}}}
    spec |= {"test_split": "test", **config}
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local lm_eval tasks, one per request type (multiple choice, generation, rolling log-likelihood), and
    the README's ARC-Easy-from-jsonl task."""
    directory = tmp_path_factory.mktemp("tasks")
    acc = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
    _task(
        directory,
        "lit_choice",
        CHOICE_DOCS,
        output_type="multiple_choice",
        doc_to_text="{{question}}",
        doc_to_target="{{label}}",
        doc_to_choice="{{choices}}",
        metric_list=acc,
    )
    _task(
        directory,
        "lit_gen",
        GEN_DOCS,
        output_type="generate_until",
        doc_to_text="{{question}}",
        doc_to_target="{{answer}}",
        generation_kwargs={"until": [","], "max_gen_toks": 12},
        metric_list=[{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    )
    _task(
        directory,
        "lit_text",
        TEXT_DOCS,
        output_type="loglikelihood_rolling",
        doc_to_text="",
        doc_to_target="{{text}}",
        metric_list=[{"metric": "bits_per_byte"}, {"metric": "word_perplexity"}],
    )
    _task(
        directory,
        "lit_arc",
        ARC_DOCS,
        output_type="multiple_choice",
        doc_to_text="Question: {{question}}\nAnswer:",
        doc_to_target="{{choices.label.index(answerKey)}}",
        doc_to_choice="{{choices.text}}",
        metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}],
    )
    return directory


@pytest.fixture(scope="module")
def loaded(memorized: Memorized) -> LoadedModel:
    return load_model(memorized.run_dir)


def direct_loglikelihood(loaded: LoadedModel, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """Σ log p(continuation | context) from one plain forward of the whole sequence."""
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(loaded.decoder.logits(loaded.decoder(ids[:, :-1])), dim=-1)[0]
    rows = logprobs[len(context) - 1 :]
    targets = torch.tensor(continuation)
    return rows.gather(-1, targets[:, None]).sum().item(), bool((rows.argmax(-1) == targets).all())


def pair_ids(loaded: LoadedModel, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm_eval's encoding of a pair: the whole string, split after the context's tokens (empty: EOS)."""
    tok = loaded.tokenizer
    if not context:
        return [tok.eos_id], tok.encode(continuation)
    whole, ctx = tok.encode(context + continuation), tok.encode(context)
    return ctx, whole[len(ctx) :]


def test_loglikelihoods_equal_a_direct_computation(loaded: LoadedModel) -> None:
    pairs = [
        ("A list is a", " mutable sequence"),
        ("", "A list"),
        ("typically", " used to store collections"),
        ("x", " y"),
        ("The list type is", " mutable"),
    ]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    lm = LitFFNLM(loaded.decoder, loaded.tokenizer, max_length=64, batch_size=2)  # padded, sorted batches
    got = lm.loglikelihood(requests, disable_tqdm=True)
    for (context, continuation), (logprob, greedy) in zip(pairs, got):
        expected, expected_greedy = direct_loglikelihood(loaded, *pair_ids(loaded, context, continuation))
        assert logprob == pytest.approx(expected, abs=1e-4) and greedy == expected_greedy
    assert got[0][1]  # the memorized continuation is the greedy one

    # a context longer than max_length keeps its last tokens: the same as scoring those directly
    short = LitFFNLM(loaded.decoder, loaded.tokenizer, max_length=16, batch_size=4)
    ((logprob, _),) = short.loglikelihood([requests[2]], disable_tqdm=True)
    context, continuation = pair_ids(loaded, *pairs[2])
    assert len(context + continuation) > 17
    kept = (context + continuation)[-17:]
    expected, _ = direct_loglikelihood(loaded, kept[: len(kept) - len(continuation)], continuation)
    assert logprob == pytest.approx(expected, abs=1e-4)


def test_rolling_loglikelihood_scores_every_token_once_after_eos(loaded: LoadedModel) -> None:
    lm = LitFFNLM(loaded.decoder, loaded.tokenizer, max_length=128)
    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (MEMORIZED,), 0)], disable_tqdm=True)
    ids = loaded.tokenizer.encode(MEMORIZED)
    expected, _ = direct_loglikelihood(loaded, [loaded.tokenizer.eos_id], ids)
    assert total == pytest.approx(expected, abs=1e-4)


def test_evaluate_cli_on_local_tasks_matches_the_direct_computations(
    memorized: Memorized, loaded: LoadedModel, task_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = [
        "evaluate",
        "--ckpt",
        str(memorized.run_dir),
        "--tasks",
        "lit_choice,lit_gen,lit_text,lit_arc",
        "--include-path",
        str(task_dir),
        "--max-length",
        "64",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    capsys.readouterr()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    saved = memorized.run_dir / "eval" / "lit_choice+lit_gen+lit_text+lit_arc.json"
    assert f"wrote {saved}" in err
    record = json.loads(saved.read_text())
    scores = record["scores"]
    assert record["global_step"] > 0 and record["settings"]["max_length"] == 64
    assert "| lit_choice | acc |" in out and "| lit_text | bits_per_byte |" in out
    assert scores["lit_arc"]["n_samples"] == 2 and {"acc", "acc_norm"} <= set(scores["lit_arc"])

    # multiple choice: the choice of highest log-likelihood, scored directly
    hits = [
        max(
            range(len(d["choices"])),
            key=lambda c: direct_loglikelihood(loaded, *pair_ids(loaded, d["question"], d["choices"][c]))[0],
        )
        == d["label"]
        for d in CHOICE_DOCS
    ]
    assert scores["lit_choice"]["acc"] == pytest.approx(sum(hits) / len(hits))
    assert scores["lit_choice"]["n_samples"] == 3 and accuracy(scores["lit_choice"]) == ("acc", sum(hits) / len(hits))

    # generation: greedy decoding up to the first "," (the stop string), compared with the answer
    tok = loaded.tokenizer
    matches = []
    for doc in GEN_DOCS:
        (new,) = generate(loaded.decoder, torch.tensor([tok.encode(doc["question"])]), 12, eos_id=tok.eos_id)
        matches.append(tok.decode(new).split(",")[0] == doc["answer"])
    assert scores["lit_gen"]["exact_match"] == pytest.approx(sum(matches) / len(matches))

    # rolling: bits per byte = −Σ log p / (ln 2 · bytes) over the documents
    total = sum(direct_loglikelihood(loaded, [tok.eos_id], tok.encode(d["text"]))[0] for d in TEXT_DOCS)
    n_bytes = sum(len(d["text"].encode()) for d in TEXT_DOCS)
    assert scores["lit_text"]["bits_per_byte"] == pytest.approx(-total / n_bytes / math.log(2), rel=1e-4)


def test_evaluate_checkpoint_api_with_a_limit(memorized: Memorized, task_dir: Path) -> None:
    scores = evaluate_checkpoint(memorized.run_dir, ["lit_choice"], include_path=task_dir, limit=2, batch_size=4)
    assert set(scores) == {"lit_choice"} and scores["lit_choice"]["n_samples"] == 2
    assert set(scores["lit_choice"]) == {"acc", "acc_stderr", "n_samples"}


def test_flatten_results_and_accuracy() -> None:
    raw = {
        "results": {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,strict": 0.25}},
        "n-samples": {"t": {"original": 10, "effective": 4}},
    }
    flat = flatten_results(raw)
    assert flat == {"t": {"acc": 0.5, "acc_stderr": 0.1, "exact_match[strict]": 0.25, "n_samples": 4.0}}
    assert accuracy({"exact_match[strict]": 0.25, "bits_per_byte": 3.0}) == ("exact_match[strict]", 0.25)
    assert accuracy({"bits_per_byte": 3.0}) is None


def test_evaluate_bad_input_is_one_line(
    memorized: Memorized, task_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    base = ["evaluate", "--ckpt", str(memorized.run_dir), "--device", "cpu"]
    line = one_line_error(capsys, [*base, "--tasks", "lit_choice", "--include-path", str(tmp_path / "no")], "evaluate")
    assert "no such directory" in line
    _task(
        tmp_path,
        "lit_lost",
        [],
        output_type="multiple_choice",
        doc_to_text="{{q}}",
        doc_to_target="0",
        doc_to_choice="{{c}}",
    )
    (tmp_path / "lit_lost.jsonl").unlink()  # its data file is gone
    line = one_line_error(capsys, [*base, "--tasks", "lit_lost", "--include-path", str(tmp_path)], "evaluate")
    assert line.startswith("lit_ffn evaluate: error: task lit_lost: lm_eval cannot load it:")

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if lm-eval were not installed
    line = one_line_error(capsys, [*base, "--tasks", "arc_easy"], "evaluate")
    assert line.endswith('not installed: pip install -e ".[eval]" (or pip install "lm-eval>=0.4,<0.5")')


def test_an_unknown_task_name_suggests_the_close_ones(task_dir: Path, monkeypatch) -> None:
    import lm_eval.tasks

    real = lm_eval.tasks.TaskManager
    # lm_eval's ~14,700 built-in configs take ~13 s to index here: the include path stands in for them
    monkeypatch.setattr(
        lm_eval.tasks,
        "TaskManager",
        lambda include_path=None, **kw: real(include_path=include_path, include_defaults=False),
    )
    with pytest.raises(
        UserError,
        match=r"unknown task 'lit_choise' \(did you mean lit_choice\?\): not among the 4 tasks, groups and tags lm_eval knows \(with ",
    ):
        task_manager(["lit_choise"], task_dir)
    assert "lit_gen" in task_manager(["lit_gen"], task_dir).all_tasks
