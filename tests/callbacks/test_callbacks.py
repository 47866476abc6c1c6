"""lit_ffn.callbacks: gate statistics, grad norm, throughput and hparams, read back from TensorBoard.

Most tests train a tiny decoder (vocabulary 64, width 32, 2 layers) for a few
steps with Lightning's Trainer on in-memory random tokens: each fit takes
about a second.  One test goes through the CLI with the callbacks of
``configs/quickstart.yaml``.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from lit_ffn.callbacks import GateStatistics, GradNormMonitor, TokenThroughputMonitor, gate_stats
from lit_ffn.callbacks.gates import _LayerProbe
from lit_ffn.callbacks.grad_norm import sharded_total_norm
from lit_ffn.cli import main
from lit_ffn.errors import UserError
from lit_ffn.ffn import BUILTIN_FFNS, DynamicGEGLU, SwiGLU
from lit_ffn.training.module import LitDecoder
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]
VOCAB, DIM, SEQ = 64, 32, 16


# ------------------------------------------------------------------ helpers
def tiny_module(ffn: Any = SwiGLU, seed: int = 0) -> LitDecoder:
    torch.manual_seed(seed)
    return LitDecoder(ffn=ffn, vocab_size=VOCAB, dim=DIM, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16, lr=1e-2)


def token_blocks(n: int = 32) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, SEQ + 1), generator=torch.Generator().manual_seed(0))


def fit(
    root: Path,
    module: L.LightningModule,
    callbacks: list[L.Callback],
    steps: int = 2,
    batch_size: int = 4,
    **trainer_kwargs: Any,
) -> Path:
    """Fit ``module`` on :func:`token_blocks` (in order, no shuffling); return the TensorBoard run dir."""
    logger = TensorBoardLogger(str(root), name="t", version="run")
    trainer_kwargs.setdefault("log_every_n_steps", 1)
    trainer_kwargs.setdefault("limit_val_batches", 0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )
    loader = torch.utils.data.DataLoader(token_blocks(), batch_size=batch_size)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    return Path(logger.log_dir)


def read_events(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    points = events.Scalars(tag)
    steps = [p.step for p in points]
    assert len(steps) == len(set(steps)), f"{tag} logged more than once per step: {steps}"
    return {p.step: p.value for p in points}


def recorded(ffn_cls: type) -> tuple[list[str], list[str]]:
    """What an FFN itself says it records (names in forward, scalars in gate_scalars)."""
    ffn, names = ffn_cls(DIM), []
    ffn.set_gate_observer(lambda module, name, tensor: names.append(name))
    ffn(torch.randn(2, 3, DIM))
    return names, list(ffn.gate_scalars())


# ------------------------------------------------------------- gate tags
@pytest.mark.parametrize("variant", sorted(BUILTIN_FFNS))
def test_each_builtin_ffn_writes_its_gate_tags(tmp_path: Path, variant: str) -> None:
    ffn_cls = BUILTIN_FFNS[variant]
    run_dir = fit(tmp_path, tiny_module(ffn_cls), [GateStatistics(every_n_steps=1, histogram_every_n_steps=1)])
    events = read_events(run_dir)
    names, scalar_names = recorded(ffn_cls)
    assert names, f"{variant} records nothing"
    expected = {f"z_gates/layer_{i:02d}/{n}_{s}" for i in range(2) for n in names for s in gate_stats.STATS}
    expected |= {f"z_gates/layer_{i:02d}/{s}" for i in range(2) for s in scalar_names}
    tags = {t for t in events.Tags()["scalars"] if t.startswith("z_gates/")}
    assert tags == expected
    for tag in expected:
        assert sorted(scalars(events, tag)) == [0, 1]  # every step, once (every_n_steps=1)
    assert set(events.Tags()["histograms"]) == {f"z_gates/layer_{i:02d}/{n}" for i in range(2) for n in names}


def test_builtin_gate_names() -> None:
    """The names the docs promise: hidden for 2-matrix FFNs, gate for gated ones, alpha + s, b for DynamicGEGLU."""
    assert recorded(BUILTIN_FFNS["relu"]) == (["hidden"], [])
    assert recorded(BUILTIN_FFNS["swiglu"]) == (["gate"], [])
    assert recorded(BUILTIN_FFNS["iso_gmlp"]) == (["gate"], [])
    assert recorded(DynamicGEGLU) == (["gate", "alpha"], ["s", "b"])


def test_logged_statistics_equal_those_of_the_recorded_tensors(tmp_path: Path) -> None:
    """Step 0's logged values against an independent forward of the same weights on the same batch."""
    run_dir = fit(tmp_path, tiny_module(DynamicGEGLU), [GateStatistics(every_n_steps=5, threshold=0.05)], steps=1)
    events = read_events(run_dir)

    reference_module, seen = tiny_module(DynamicGEGLU), {}
    for i, ffn in enumerate(reference_module.ffn_modules):
        ffn.set_gate_observer(lambda module, name, tensor, i=i: seen.__setitem__((i, name), tensor.double().flatten()))
    tokens, targets = LitDecoder.split_batch(token_blocks()[:4])
    reference_module(tokens, targets)
    for (layer, name), values in seen.items():
        expected = {
            "mean": values.mean().item(),
            "std": values.std(correction=0).item(),
            "frac_near_zero": (values.abs() < 0.05).double().mean().item(),
            "frac_negative": (values < 0).double().mean().item(),
            "max_abs": values.abs().max().item(),
            "min": values.min().item(),
            "max": values.max().item(),
        }
        for stat, value in expected.items():
            logged = scalars(events, f"z_gates/layer_{layer:02d}/{name}_{stat}")[0]
            assert logged == pytest.approx(value, rel=1e-5, abs=1e-7), (layer, name, stat)
    assert scalars(events, "z_gates/layer_01/s")[0] == pytest.approx(0.1)
    assert scalars(events, "z_gates/layer_01/b")[0] == 0.0


def test_dynamic_geglu_alpha_is_the_same_for_every_token_at_init(tmp_path: Path) -> None:
    """α's std across tokens is ≈ 0 at init, and only becomes non-zero as the LayerNorm affine learns.

    Why: α = σ(s·‖LayerNorm(x)‖₂ + b).  With the LayerNorm's weight 1 and bias
    0 (its init), LayerNorm(x) has zero mean and unit variance over its ``d``
    features, so ‖LayerNorm(x)‖₂ = √d for *every* token (up to the ``eps``
    in the variance; the FFN input is RMS-normalised, so eps ≪ variance) and
    α = σ(0.1·√d) is one constant.  s and b alone cannot change that; only
    the learned affine weight/bias make ‖LayerNorm(x)‖ token-dependent.
    """
    run_dir = fit(tmp_path, tiny_module(DynamicGEGLU), [GateStatistics(every_n_steps=3)], steps=4)
    events = read_events(run_dir)
    for layer in range(2):
        alpha_std = scalars(events, f"z_gates/layer_{layer:02d}/alpha_std")
        alpha_mean = scalars(events, f"z_gates/layer_{layer:02d}/alpha_mean")
        gate_std = scalars(events, f"z_gates/layer_{layer:02d}/gate_std")
        assert sorted(alpha_std) == [0, 3]  # every_n_steps=3, and the last step
        assert alpha_std[0] < 1e-6 < gate_std[0]
        assert alpha_mean[0] == pytest.approx(1 / (1 + math.exp(-0.1 * math.sqrt(DIM))), rel=1e-5)
        assert alpha_std[3] > 100 * max(alpha_std[0], 1e-8)  # trained LayerNorm affine: α now varies per token


# ------------------------------------------------------ cost and lifecycle
class ObserverSpy(L.Callback):
    """Records, per training batch, whether gate observers are installed during the forward."""

    def __init__(self) -> None:
        self.during_forward: list[int] = []
        self.elsewhere: list[int] = []

    @staticmethod
    def installed(pl_module: LitDecoder) -> int:
        return sum(getattr(f, "_gate_observer", None) is not None for f in pl_module.ffn_modules)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # after GateStatistics' hook
        self.during_forward.append(self.installed(pl_module))

    def on_after_backward(self, trainer, pl_module) -> None:
        self.elsewhere.append(self.installed(pl_module))

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.elsewhere.append(self.installed(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, *args) -> None:
        self.elsewhere.append(self.installed(pl_module))


def test_observer_is_installed_only_during_logging_step_forwards(tmp_path: Path) -> None:
    gates, spy = GateStatistics(every_n_steps=3), ObserverSpy()
    module = tiny_module()
    fit(tmp_path, module, [gates, spy], steps=5, limit_val_batches=1, val_check_interval=2)
    assert spy.during_forward == [2, 0, 0, 2, 2]  # steps 0 and 3 (every 3), 4 (the last)
    assert spy.elsewhere and set(spy.elsewhere) == {0}  # never during backward, after a step, or in validation
    assert ObserverSpy.installed(module) == 0
    for _, probe in gates._probes:  # accumulators are reset after each logging step
        for acc in probe.accumulators.values():
            assert acc.sums.abs().sum().item() == 0


def test_micro_batches_are_one_step_combined_exactly(tmp_path: Path) -> None:
    """accumulate_grad_batches=2 × batch 2 logs once per optimizer step, equal to one batch of 4."""
    accumulated = read_events(
        fit(
            tmp_path / "a",
            tiny_module(),
            [GateStatistics(every_n_steps=1)],
            steps=2,
            batch_size=2,
            accumulate_grad_batches=2,
        )
    )
    whole = read_events(fit(tmp_path / "b", tiny_module(), [GateStatistics(every_n_steps=1)], steps=1, batch_size=4))
    tags = [t for t in whole.Tags()["scalars"] if t.startswith("z_gates/")]
    assert tags
    for tag in tags:
        steps = scalars(accumulated, tag)
        assert sorted(steps) == [0, 1]  # optimizer steps, not micro-batches
        assert steps[0] == pytest.approx(scalars(whole, tag)[0], rel=1e-5, abs=1e-7), tag


def test_cross_rank_reduction_is_exact() -> None:
    """compute() reduces through the strategy: sums with SUM, maxima with MAX (a 2-rank all_reduce, simulated)."""
    g = torch.Generator().manual_seed(3)
    data = [torch.randn(50, 8, generator=g) + r for r in range(2)]  # rank r's gate values

    def callback_holding(tensor: torch.Tensor) -> GateStatistics:
        cb = GateStatistics(every_n_steps=1)
        probe = _LayerProbe(cb.threshold, 16)
        probe(None, "gate", tensor)
        cb._probes = [(torch.nn.Identity(), probe)]
        return cb

    callbacks = [callback_holding(x) for x in data]
    peer = {0: callbacks[1], 1: callbacks[0]}

    class TwoRankStrategy:
        def __init__(self, rank: int) -> None:
            self.rank = rank

        def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
            other_probe = peer[self.rank]._probes[0][1].accumulators["gate"]
            other = other_probe.sums if tensor.shape[-1] == 5 else other_probe.maxes
            return tensor + other[None] if reduce_op == "sum" else torch.maximum(tensor, other[None])

    class FakeTrainer:
        def __init__(self, rank: int) -> None:
            self.strategy = TwoRankStrategy(rank)

    results = [cb.compute(FakeTrainer(rank)) for rank, cb in enumerate(callbacks)]
    both = torch.cat(data).double()
    assert results[0] == results[1]
    assert results[0]["z_gates/layer_00/gate_mean"] == pytest.approx(both.mean().item(), rel=1e-6)
    assert results[0]["z_gates/layer_00/gate_std"] == pytest.approx(both.std(correction=0).item(), rel=1e-6)
    assert results[0]["z_gates/layer_00/gate_min"] == pytest.approx(both.min().item())
    assert results[0]["z_gates/layer_00/gate_max"] == pytest.approx(both.max().item())


def test_fsdp2_sharded_scalars_are_gathered(monkeypatch) -> None:
    """Under FSDP2 ``s`` and ``b`` are DTensors: logged through ``full_tensor()`` (a 1-rank gloo group here;
    a 2-rank CPU run of configs/strategy/fsdp2.yaml is in docs/gates.md)."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    from tests.scaleout_helpers import _free_port

    monkeypatch.setenv("MASTER_PORT", str(_free_port()))  # a fixed port collides with other runs on the machine
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ffn = DynamicGEGLU(DIM)
        fully_shard(ffn)
        assert hasattr(ffn.s, "full_tensor")  # really a DTensor
        cb = GateStatistics()
        probe = _LayerProbe(cb.threshold, 16)
        ffn.set_gate_observer(probe)
        ffn(torch.randn(2, 4, DIM))
        ffn.set_gate_observer(None)
        cb._probes = [(ffn, probe)]

        class OneRank:
            strategy = L.pytorch.strategies.SingleDeviceStrategy(device=torch.device("cpu"))

        metrics = cb.compute(OneRank())
        assert metrics["z_gates/layer_00/s"] == pytest.approx(0.1) and metrics["z_gates/layer_00/b"] == 0.0
        assert metrics["z_gates/layer_00/alpha_std"] < 1e-6
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------ torch.compile
def compile_blocks(module: LitDecoder, checkpointing: bool = False) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    layers = module.model.layers
    for i in range(len(layers)):
        if checkpointing:
            layers[i] = checkpoint_wrapper(layers[i], preserve_rng_state=False)
        layers[i].compile(backend="eager")  # dynamo only: what matters here is tracing and guards


@pytest.mark.parametrize("checkpointing", [False, True], ids=["compile", "compile+checkpointing"])
def test_compiled_blocks_give_the_same_statistics_without_graph_breaks(tmp_path: Path, checkpointing: bool) -> None:
    """Per-block torch.compile: the same numbers as eager, no graph break, at most one extra graph.

    Without activation checkpointing the observed variant is traced (one
    recompile: 2 graphs for the blocks); with it, observed steps run eagerly
    (1 graph).  A graph break would split the blocks on every later step too.
    """
    from torch._dynamo.utils import counters

    eager = read_events(fit(tmp_path / "eager", tiny_module(DynamicGEGLU), [GateStatistics(every_n_steps=2)], steps=4))
    torch._dynamo.reset()
    counters.clear()
    module = tiny_module(DynamicGEGLU)
    compile_blocks(module, checkpointing)
    try:
        compiled = read_events(fit(tmp_path / "compiled", module, [GateStatistics(every_n_steps=2)], steps=4))
        assert dict(counters["graph_break"]) == {}
        assert counters["stats"]["unique_graphs"] == (1 if checkpointing else 2)
    finally:
        torch._dynamo.reset()
    tags = [t for t in eager.Tags()["scalars"] if t.startswith("z_gates/")]
    for tag in tags:
        got, expected = scalars(compiled, tag), scalars(eager, tag)
        assert sorted(got) == sorted(expected) == [0, 2, 3]
        for step in expected:
            assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), (tag, step)


# ---------------------------------------------------- grad norm, throughput
def test_grad_norm_is_logged_before_clipping(tmp_path: Path) -> None:
    events = read_events(fit(tmp_path, tiny_module(), [GradNormMonitor()], steps=2, gradient_clip_val=1e-3))
    logged = scalars(events, "vitals/grad_norm")
    assert sorted(logged) == [0, 1]

    reference = tiny_module()  # the same initial weights, the same first batch
    tokens, targets = LitDecoder.split_batch(token_blocks()[:4])
    reference(tokens, targets).backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in reference.parameters() if p.grad is not None])
    assert logged[0] == pytest.approx(expected.item(), rel=1e-5)
    assert logged[0] > 100 * 1e-3  # far above the clipping threshold: measured before clipping


@pytest.mark.parametrize("accumulate", [1, 2])
def test_throughput_tags_count_tokens_per_optimizer_step(tmp_path: Path, accumulate: int) -> None:
    module = tiny_module()
    events = read_events(
        fit(
            tmp_path, module, [TokenThroughputMonitor(available_flops=1e9)], steps=3, accumulate_grad_batches=accumulate
        )
    )
    tokens_per_step = accumulate * 4 * SEQ
    assert scalars(events, "vitals/tokens_seen") == {k: (k + 1) * tokens_per_step for k in range(3)}
    time_ = scalars(events, "vitals/time")
    assert sorted(time_) == [0, 1, 2] and time_[0] < time_[1] < time_[2]
    step_time = scalars(events, "vitals/step_time")
    assert step_time[2] == pytest.approx(time_[2] - time_[1], rel=1e-4)
    tokens_per_sec = scalars(events, "vitals/tokens_per_sec")  # rates need two logged points (window 2)
    flops = scalars(events, "vitals/device/flops_per_sec")
    mfu = scalars(events, "vitals/mfu")
    assert sorted(tokens_per_sec) == sorted(flops) == sorted(mfu) == [1, 2]
    assert tokens_per_sec[2] == pytest.approx(tokens_per_step / (time_[2] - time_[1]), rel=1e-4)
    assert flops[2] == pytest.approx(tokens_per_sec[2] * module.flops_per_token(SEQ), rel=1e-4)
    assert mfu[2] == pytest.approx(flops[2] / 1e9, rel=1e-4)
    assert "vitals/device/peak_memory_gib" not in events.Tags()["scalars"]  # CUDA only


def test_bad_callback_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="every_n_steps"):
        GateStatistics(every_n_steps=0)
    with pytest.raises(UserError, match="threshold"):
        GateStatistics(threshold=-1.0)
    with pytest.raises(UserError, match="compiled"):
        GateStatistics(compiled="sometimes")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="available_flops"):
        TokenThroughputMonitor(available_flops="lots")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="window_size"):
        TokenThroughputMonitor(window_size=1)


# ------------------------------------------- the shipped config, end to end
USER_FFN = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from lit_ffn.ffn import GateRecorder

    class TemperedReLU(GateRecorder):
        """A user's FFN that opts in to gate statistics: y = W2 relu(W1 x / t)."""

        def __init__(self, dim: int, hidden_mult: int = 2):
            super().__init__()
            self.w1, self.w2 = nn.Linear(dim, hidden_mult * dim), nn.Linear(hidden_mult * dim, dim)
            self.temperature = nn.Parameter(torch.ones(1))

        def forward(self, x):
            act = torch.relu(self.w1(x) / self.temperature)
            self.record("act", act)
            return self.w2(act)

        def gate_scalars(self):
            return {"temperature": self.temperature}
    '''
)


def test_quickstart_callbacks_write_the_whole_picture(tmp_path: Path, tiny_dataset: Path, monkeypatch) -> None:
    """The callbacks list of configs/quickstart.yaml, a user FFN that opts in, through `lit_ffn fit`."""
    (tmp_path / "user_ffns.py").write_text(USER_FFN)
    monkeypatch.syspath_prepend(str(tmp_path))
    shipped = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())["trainer"]["callbacks"]
    names = [c["class_path"] for c in shipped]
    assert {
        "lit_ffn.callbacks.GateStatistics",
        "lit_ffn.callbacks.GradNormMonitor",
        "lit_ffn.callbacks.TokenThroughputMonitor",
        "lit_ffn.callbacks.HyperparameterSummary",
    } <= set(names)
    (tmp_path / "callbacks.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": shipped}}))
    args = tiny_fit_args(
        tiny_dataset,
        tmp_path,
        "--config",
        str(tmp_path / "callbacks.yaml"),
        "--model.ffn=user_ffns.TemperedReLU",
        "--seed_everything=7",
        steps=6,
    )
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "tiny" / "TemperedReLU" / "seed_7"
    events = read_events(run_dir)
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "vitals/grad_norm",
        "vitals/tokens_seen",
        "vitals/tokens_per_sec",
        "vitals/mfu",
        "vitals/step_time",
        "vitals/time",
        "val/loss",
        "val/ppl",
    } <= tags
    assert {"vitals/lr/decay", "vitals/lr/no_decay"} <= set(tags)  # LearningRateMonitor, in the vitals group
    every = shipped[names.index("lit_ffn.callbacks.GateStatistics")]["init_args"]["every_n_steps"]
    gate_steps = sorted(scalars(events, "z_gates/layer_01/act_frac_near_zero"))
    assert gate_steps == sorted({*range(0, 6, every), 5})
    assert scalars(events, "z_gates/layer_00/temperature")[0] == 1.0
    assert scalars(events, "z_gates/layer_00/act_frac_negative")[0] == 0.0  # a ReLU is never negative
    assert scalars(events, "vitals/tokens_seen")[5] == 6 * 4 * 32  # 6 steps × batch 4 × seq_len 32

    content = events.PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hparams = {k: v.string_value or v.number_value for k, v in session.hparams.items()}
    assert hparams["ffn"] == "TemperedReLU" and hparams["ffn_class"] == "TemperedReLU"
    assert hparams["seed"] == 7 and hparams["dim"] == 32 and hparams["tokens_per_step"] == 4 * 32
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/loss", "val/ppl", "train/loss"}
    assert "hp_metric" not in tags  # Lightning's placeholder session is replaced, not added to

    # resumed: tokens and training time go on from the checkpoint; no second HPARAMS session
    assert main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps=8"]) == 0
    resumed = read_events(run_dir)
    tokens = resumed.Scalars("vitals/tokens_seen")
    assert tokens[-1].value == 8 * 4 * 32 and [p.value for p in tokens] == sorted(p.value for p in tokens)
    time_ = [p.value for p in resumed.Scalars("vitals/time")]
    assert time_ == sorted(time_)
    starts = sum(1 for f in run_dir.glob("events.out.tfevents.*") for _ in _hparams_sessions(f))
    assert starts == 1


def _hparams_sessions(events_file: Path):
    """The HPARAMS session-start summaries in one events file."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for event in EventFileLoader(str(events_file)).Load():
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                yield value


# -------------------------------------------------------------------- plots
def test_plots_read_back_what_the_callbacks_wrote(tmp_path: Path) -> None:
    from lit_ffn.experiments import plots

    dyn = fit(tmp_path / "dyn", tiny_module(DynamicGEGLU), [GateStatistics(every_n_steps=2)], steps=3)
    relu = fit(tmp_path / "relu", tiny_module(BUILTIN_FFNS["relu"]), [GateStatistics(every_n_steps=2)], steps=3)
    scalars_ = plots.read_scalars(dyn)
    events = read_events(dyn)
    assert scalars_["z_gates/layer_01/alpha_std"] == sorted(scalars(events, "z_gates/layer_01/alpha_std").items())

    profile = plots.gate_profile(dyn)  # the last logged step (2)
    assert profile["alpha_std"] == [scalars(events, f"z_gates/layer_{i:02d}/alpha_std")[2] for i in range(2)]
    assert profile["s"] == [scalars(events, f"z_gates/layer_{i:02d}/s")[2] for i in range(2)]
    assert plots.gate_profile(dyn, step=0)["alpha_mean"][0] == scalars(events, "z_gates/layer_00/alpha_mean")[0]
    assert plots.split_gate_tag("z_gates/layer_03/gate_max_abs") == (3, "gate", "max_abs")
    assert plots.split_gate_tag("z_gates/layer_03/gate_max") == (3, "gate", "max")
    assert plots.split_gate_tag("z_gates/layer_12/b") == (12, "b", None)
    assert plots.split_gate_tag("gates/layer_12/b") == (12, "b", None)  # runs logged before the z_ prefix
    assert plots.split_gate_tag("train/loss") is None

    for out in (
        plots.plot_gate_profile({"DynamicGEGLU": dyn, "ReLU": relu}, tmp_path / "png" / "gates.png"),
        plots.plot_gate_series(
            {"DynamicGEGLU": dyn, "ReLU": relu}, ["alpha_std", "s", "hidden_frac_near_zero"], tmp_path / "series.png"
        ),
        plots.plot_curves({"DynamicGEGLU": [dyn], "both": [dyn, relu]}, "train/loss", tmp_path / "curves.png"),
    ):
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000

    with pytest.raises(UserError, match="not a run directory"):
        plots.read_scalars(tmp_path)
    with pytest.raises(UserError, match="no scalar 'val/nope'"):
        plots.plot_curves({"x": [dyn]}, "val/nope", tmp_path / "nope.png")
    assert plots.main(["profile", "--out", str(tmp_path / "cli.png"), f"dyn={dyn}"]) == 0
    assert (tmp_path / "cli.png").exists()


def test_mean_band_over_seeds() -> None:
    from lit_ffn.experiments.plots import mean_band

    steps, mean, lo, hi = mean_band([[(0, 1.0), (10, 3.0)], [(0, 3.0), (10, 5.0), (20, 7.0)]])
    assert steps == [0, 10, 20] and mean == [2.0, 4.0, 7.0] and lo == [1.0, 3.0, 7.0] and hi == [3.0, 5.0, 7.0]


def test_bad_callback_value_in_yaml_is_one_line(tmp_path: Path, capsys) -> None:
    bad = {
        "trainer": {
            "callbacks": [{"class_path": "lit_ffn.callbacks.GateStatistics", "init_args": {"every_n_steps": 0}}]
        }
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    argv = [
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        "--config",
        str(tmp_path / "bad.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "lit_ffn: error: GateStatistics: every_n_steps must be >= 1, got 0"


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
def test_sharded_total_norm_equals_the_norm_of_the_whole(norm_type: float) -> None:
    """FSDP1 gives each rank a flat piece of every gradient: the ranks' Σ|g|ᵖ (max for ∞) combine
    into the norm of the whole.  Two ranks are simulated: 'all_reduce' adds the other rank's value."""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, 7, generator=g), torch.randn(11, generator=g), torch.randn(3, 2, generator=g)]
    flat = [t.reshape(-1) for t in grads]
    shards = [[t[: t.numel() // 3] for t in flat], [t[t.numel() // 3 :] for t in flat] + [torch.empty(0)]]
    expected = torch.nn.utils.get_total_norm(grads, norm_type=norm_type)

    def local_value(rank: int) -> torch.Tensor:
        captured = {}
        sharded_total_norm(shards[rank], norm_type, lambda t, op: captured.setdefault("v", (t.clone(), op)))
        return captured["v"]

    for rank in (0, 1):
        other, op = local_value(1 - rank)

        def all_reduce(tensor: torch.Tensor, op_: str, other=other, op=op) -> None:
            assert op_ == op
            tensor.copy_(torch.maximum(tensor, other) if op_ == "max" else tensor + other)

        torch.testing.assert_close(sharded_total_norm(shards[rank], norm_type, all_reduce), expected)
