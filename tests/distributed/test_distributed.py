"""Scale-out pieces: AC/compile/FSDP2 application, mixed precision, strategies, clipping, consolidation,
atomic checkpoint publication and the non-finite-loss guard.

Most tests run in this process (an FSDP2 "world" of one gloo rank where
sharding is needed); the 2-process CPU runs shared with ``tests/distributed/test_resume.py``
(``scaleout_runs``) check FSDP2 against DDP, clipping and consolidation.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.distributed as dist

from lit_ffn.cli import main
from lit_ffn.distributed import (
    FSDP2Strategy,
    clip_gradients,
    data_parallel_mesh,
    is_compiled,
    mixed_precision_policy,
    parallelize,
)
from lit_ffn.errors import UserError
from lit_ffn.ffn import SwiGLU
from lit_ffn.model import Decoder
from lit_ffn.training.checkpointing import partial_path, publish
from tests.conftest import TINY_VOCAB, tiny_fit_args
from tests.scaleout_helpers import NAN_AT, STEPS, read_records, scaleout_runs  # noqa: F401 - fixture

CLIP = 0.5  # trainer.gradient_clip_val of the scaleout runs
NAN_STEP = int(NAN_AT.split(":")[1])  # the skipped step of the scaleout runs (NaN loss on one rank)
#: chunked vs cce_torch_compile over the scaleout runs' steps: both exact in fp32, summed in other orders
LOSS_BACKEND_REL = 1e-5
FIT_STEPS = 6  # the single-process fits of the non-finite guard tests below (within the first epoch)


def tiny_decoder() -> Decoder:
    torch.manual_seed(0)
    return Decoder(SwiGLU, vocab_size=TINY_VOCAB, dim=32, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=16)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, TINY_VOCAB, (2, 17), generator=torch.Generator().manual_seed(1))
    return tokens[:, :-1], tokens[:, 1:]


def loss_and_grads(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss = model(*batch())
    loss.backward()
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad.full_tensor() if hasattr(param.grad, "full_tensor") else param.grad
        grads[name.replace("_checkpoint_wrapped_module.", "")] = grad.float()
    return loss.detach().float(), grads


# ---------------------------------------------------------------- parallelize
def test_activation_checkpointing_then_compile_keeps_keys_and_numbers() -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    plain, model = tiny_decoder(), tiny_decoder()
    parallelize(model, activation_checkpointing=True, compile=True, compile_backend="eager")
    layers = list(model.layers)
    assert all(isinstance(layer, CheckpointWrapper) and is_compiled(layer) for layer in layers)
    parallelize(model, activation_checkpointing=True, compile=True, compile_backend="eager")  # idempotent
    assert list(model.layers) == layers and not isinstance(layers[0]._checkpoint_wrapped_module, CheckpointWrapper)
    assert list(model.state_dict()) == list(plain.state_dict())  # checkpoints move between eager and compiled runs

    ref_loss, ref_grads = loss_and_grads(plain)
    loss, grads = loss_and_grads(model)
    assert torch.equal(loss, ref_loss)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=1e-7, msg=name)


@pytest.fixture
def one_rank_group(tmp_path: Path):
    """A gloo process group of one rank and its 1-D "data_parallel" mesh: FSDP2 without subprocesses."""
    from torch.distributed.device_mesh import init_device_mesh

    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,), mesh_dim_names=("data_parallel",))
    finally:
        dist.destroy_process_group()


def test_fully_shard_per_block_then_root_with_tied_embedding(one_rank_group) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    plain, model = tiny_decoder(), tiny_decoder()
    parallelize(model, activation_checkpointing=True, compile=True, mesh=one_rank_group, compile_backend="eager")
    assert isinstance(model, FSDPModule)  # the root: embedding (= tied head) and final norm
    for layer in model.layers:
        assert isinstance(layer, FSDPModule) and isinstance(layer, CheckpointWrapper) and is_compiled(layer)
    assert all(isinstance(p, DTensor) for p in model.parameters())
    assert model.head_weight is model.embed.weight  # still tied after sharding

    ref_loss, ref_grads = loss_and_grads(plain)
    loss, grads = loss_and_grads(model)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-6)
    for name in ref_grads:  # the embedding's gradient holds the input and the head contributions
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_bf16_mixed_policy_computes_in_bf16_and_keeps_fp32_shards(one_rank_group) -> None:
    from torch.distributed.tensor import DTensor

    plain, model = tiny_decoder(), tiny_decoder()
    parallelize(model, mesh=one_rank_group, precision="bf16-mixed")
    seen = {}
    model.layers[0].attn.q_proj.register_forward_hook(lambda mod, inp, out: seen.update(block=mod.weight.dtype))
    model.norm.register_forward_hook(lambda mod, inp, out: seen.update(root=model.embed.weight.dtype))
    ref_loss, _ = loss_and_grads(plain)
    loss, _ = loss_and_grads(model)
    assert seen == {"block": torch.bfloat16, "root": torch.bfloat16}  # all-gathered in bf16
    for param in model.parameters():  # sharded master weights and reduced gradients stay fp32
        assert isinstance(param, DTensor) and param.dtype == torch.float32 and param.grad.dtype == torch.float32
    assert loss.item() != ref_loss.item() and abs(loss.item() - ref_loss.item()) < 1e-2


def test_mixed_precision_policy_follows_trainer_precision() -> None:
    assert mixed_precision_policy("32-true").param_dtype is None
    bf16_mixed = mixed_precision_policy("bf16-mixed")
    assert (bf16_mixed.param_dtype, bf16_mixed.reduce_dtype) == (torch.bfloat16, torch.float32)
    bf16_true = mixed_precision_policy("bf16-true")
    assert (bf16_true.param_dtype, bf16_true.reduce_dtype) == (None, torch.float32)
    with pytest.raises(UserError, match="16-mixed.*32-true, bf16-mixed, bf16-true"):
        mixed_precision_policy("16-mixed")


def test_fsdp2_strategy_is_data_parallel_over_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.strategies import ModelParallelStrategy

    seen = {}
    monkeypatch.setattr(
        ModelParallelStrategy,
        "setup_environment",
        lambda self: seen.update(dp=self._data_parallel_size, tp=self._tensor_parallel_size),
    )
    strategy = FSDP2Strategy()
    strategy.num_nodes, strategy.parallel_devices = 2, [torch.device("cpu")] * 4
    strategy.setup_environment()
    assert seen == {"dp": 8, "tp": 1}


def test_tensor_parallel_mesh_is_refused() -> None:
    class Mesh:
        mesh_dim_names = ("data_parallel", "tensor_parallel")

        def __getitem__(self, name):
            return SimpleNamespace(size=lambda: {"data_parallel": 1, "tensor_parallel": 2}[name])

    with pytest.raises(UserError, match="tensor_parallel_size=2.*FSDP2Strategy"):
        data_parallel_mesh(Mesh())
    assert data_parallel_mesh(None) is None


def test_fsdp1_norm_clipping_goes_to_the_fsdp_root() -> None:
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    calls = []
    root = SimpleNamespace(clip_grad_norm_=lambda value: calls.append(("fsdp_root", value)))
    module = SimpleNamespace(
        clip_gradients=lambda opt, gradient_clip_val, gradient_clip_algorithm: calls.append(
            ("lightning", gradient_clip_val, gradient_clip_algorithm)
        )
    )
    fsdp = FSDPStrategy()
    fsdp.model = root
    module.trainer = SimpleNamespace(strategy=fsdp)
    clip_gradients(module, None, 1.0, "norm")
    clip_gradients(module, None, 1.0, "value")  # value clipping is Lightning's own, also under FSDP1
    module.trainer = SimpleNamespace(strategy=DDPStrategy())
    clip_gradients(module, None, 1.0, "norm")
    assert calls == [("fsdp_root", 1.0), ("lightning", 1.0, "value"), ("lightning", 1.0, "norm")]


# ------------------------------------------------------- 2-process CPU runs
@pytest.mark.scaleout
def test_fsdp2_and_ddp_train_the_same_model(scaleout_runs) -> None:  # noqa: F811
    fsdp2, ddp = scaleout_runs("fsdp2"), scaleout_runs("ddp")
    for rank in (0, 1):
        a, b = read_records(fsdp2.reference_records, rank), read_records(ddp.reference_records, rank)
        assert [r["batch"] for r in a] == [r["batch"] for r in b]
        assert a[0]["loss"] == b[0]["loss"]  # same init, same data: the first loss is bit-identical
        for ra, rb in zip(a, b):
            if ra["step"] != NAN_STEP:  # later steps differ only by reduction order
                assert float.fromhex(ra["loss"]) == pytest.approx(float.fromhex(rb["loss"]), rel=1e-5)
                assert ra["pre_clip_norm"] == pytest.approx(rb["pre_clip_norm"], rel=1e-4)


@pytest.mark.scaleout
def test_fsdp2_tied_head_trains_the_same_with_cce_torch_compile(
    scaleout_runs,  # noqa: F811
    small_dataset: Path,
    tmp_path: Path,
) -> None:
    """The tied head under FSDP2 (2 gloo ranks, the head is the root's all-gathered embedding during the
    forward) through a library loss backend: Cut Cross-Entropy's torch.compile implementation
    (``model.loss_impl=cce_torch_compile``) trains the fsdp2 reference run's model — same batches, the
    same skipped NaN step, losses and gradient norms equal to the chunked loss's up to reduction order."""
    pytest.importorskip("cut_cross_entropy", reason="the [cce] extra: pip install 'lit_ffn[cce]'")
    from tests.scaleout_helpers import launch, tiny_scaleout_args

    reference = scaleout_runs("fsdp2")
    root = tmp_path / "cce"
    argv = [*tiny_scaleout_args(small_dataset, root, "fsdp2", root / "records"), "--model.loss_impl=cce_torch_compile"]
    rc, output = launch(argv, "torchrun", root / "logs", LITFFN_TEST_NAN_AT=NAN_AT)
    assert rc == 0, output[-6000:]
    for rank in (0, 1):
        a, b = read_records(reference.reference_records, rank), read_records(root / "records", rank)
        assert len(a) == len(b) == STEPS and [r["batch"] for r in a] == [r["batch"] for r in b]
        assert [r["skipped"] for r in a] == [r["skipped"] for r in b] and b[-1]["skipped"] == 1
        for ra, rb in zip(a, b):
            if ra["step"] != NAN_STEP:
                assert float.fromhex(rb["loss"]) == pytest.approx(float.fromhex(ra["loss"]), rel=LOSS_BACKEND_REL)
                assert rb["pre_clip_norm"] == pytest.approx(ra["pre_clip_norm"], rel=LOSS_BACKEND_REL)


@pytest.mark.scaleout
@pytest.mark.parametrize("strategy", ["fsdp2", "ddp"])
def test_gradient_clipping_by_norm(scaleout_runs, strategy: str) -> None:  # noqa: F811
    records = [r for r in read_records(scaleout_runs(strategy).reference_records, 0) if r["step"] != NAN_STEP]
    assert len(records) == STEPS - 1
    clipped = [r for r in records if r["pre_clip_norm"] > CLIP]
    assert len(clipped) >= len(records) // 2  # most steps needed clipping (lr 1e-2, tiny model)…
    for r in records:  # …and got it, over all shards; the others were left as they were
        expected = CLIP if r["pre_clip_norm"] > CLIP else r["pre_clip_norm"]
        assert r["post_clip_norm"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.scaleout
def test_consolidate_sharded_checkpoint_loads_on_one_cpu(scaleout_runs, tmp_path: Path, capsys) -> None:  # noqa: F811
    from lit_ffn.training.module import LitDecoder

    runs = scaleout_runs("fsdp2")
    sharded = runs.reference / "checkpoints" / "last.ckpt"
    assert sharded.is_dir() and sorted(p.name for p in sharded.resolve().iterdir() if p.suffix == ".distcp") == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    out = tmp_path / "eval" / "model.ckpt"
    assert main(["consolidate", str(sharded), str(out)]) == 0

    single = torch.load(out, map_location="cpu", weights_only=True)
    full = torch.load(runs.reference_records / "full_state.pt", map_location="cpu", weights_only=True)
    assert single["state_dict"].keys() == full.keys()
    assert all(torch.equal(single["state_dict"][k], full[k]) for k in full)  # the trained weights, gathered
    assert single["global_step"] == STEPS and "optimizer_states" not in single

    model = LitDecoder.load_from_checkpoint(out, map_location="cpu")
    tokens, targets = batch()
    assert torch.isfinite(model(tokens, targets))
    validate = [
        "validate",
        "--config",
        str(runs.reference / "config.yaml"),
        "--ckpt_path",
        str(out),
        "--trainer.strategy=auto",
        "--trainer.devices=1",
        "--trainer.logger=false",
    ]
    assert main(validate) == 0

    capsys.readouterr()
    assert main(["consolidate", str(sharded), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    ddp_last = scaleout_runs("ddp").reference / "checkpoints" / "last.ckpt"
    assert main(["consolidate", str(ddp_last), str(tmp_path / "x.ckpt")]) == 2
    assert "already a single-file checkpoint" in capsys.readouterr().err


# ---------------------------------------------------- atomic publication
def test_publish_directory_checkpoint_through_a_symlink(tmp_path: Path) -> None:
    final = tmp_path / "last.ckpt"
    for step in (2, 4):
        partial = partial_path(final)
        partial.mkdir()
        (partial / "shard").write_text(f"step {step}")
        publish(partial, final, tag=str(step))
        assert final.is_symlink() and (final / "shard").read_text() == f"step {step}"
    # only the published target remains (the step-2 one was removed after the switch)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.ckpt.step4", "last.ckpt"]
    (tmp_path / ".last.ckpt.step9-orphan").mkdir()  # left by a save killed between rename and switch
    partial_path(final).write_text("single file")  # the run switched to a single-file strategy
    publish(partial_path(final), final, tag="6")
    assert final.is_file() and not final.is_symlink() and final.read_text() == "single file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_publish_replaces_a_real_directory_from_plain_lightning(tmp_path: Path) -> None:
    final = tmp_path / "last.ckpt"
    final.mkdir()
    (final / "old").write_text("old")
    partial = partial_path(final)
    partial.mkdir()
    (partial / "new").write_text("new")
    publish(partial, final, tag="1")
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.ckpt.step1", "last.ckpt"]


# ------------------------------------------------------ non-finite guard
def test_nonfinite_loss_stops_naming_step_and_last_good_checkpoint(
    tmp_path: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("LITFFN_TEST_NAN_AT", "0:3")  # rank 0, batch 3: the loss of step 3 is NaN
    args = tiny_fit_args(
        tiny_dataset,
        tmp_path,
        "--checkpoint.every_n_train_steps=2",
        "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
        f"--trainer.callbacks.out_dir={tmp_path / 'records'}",
        steps=6,
    )
    assert main(args) == 3  # a diverged fit: lit_ffn.cli exits 3 (lit_ffn ablate records the run as diverged)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit_ffn: error:")]
    last = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0" / "checkpoints" / "last.ckpt"
    assert len(lines) == 1
    assert "non-finite training loss (nan) at step 3" in lines[0]
    assert f"last good checkpoint is {last} (step 2)" in lines[0] and "model.nonfinite=skip" in lines[0]
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


class _WatchStep(L.Callback):
    """Parameters before and after one batch, and AdamW's step counts at the end."""

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx, self.before, self.after, self.adam_steps = batch_idx, {}, {}, set()

    def _params(self, module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.named_parameters()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            self.before = self._params(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            self.after = self._params(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        state = trainer.optimizers[0].state
        self.adam_steps = {int(s["step"]) for s in state.values()}


def test_nonfinite_loss_skip_leaves_weights_and_optimizer_untouched(
    tmp_path: Path, tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_ffn.training.lightning_cli import LitFFNCLI

    monkeypatch.setenv("LITFFN_TEST_NAN_AT", "0:3")
    args = tiny_fit_args(
        tiny_dataset,
        tmp_path,
        "--model.nonfinite=skip",
        "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
        f"--trainer.callbacks.out_dir={tmp_path / 'records'}",
        steps=FIT_STEPS,
    )
    cli = LitFFNCLI(args=args[1:], run=False)
    watch = _WatchStep(batch_idx=3)
    cli.trainer.callbacks.append(watch)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    assert watch.before and watch.before.keys() == watch.after.keys()
    assert all(torch.equal(watch.before[k], watch.after[k]) for k in watch.before)  # the NaN step changed nothing
    assert watch.adam_steps == {FIT_STEPS - 1}  # AdamW stepped on the 5 good batches only
    assert cli.trainer.global_step == FIT_STEPS and cli.model.nonfinite_guard.skipped == 1
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.value for e in events.Scalars("train/nonfinite_skipped")][-1] == 1.0
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["nonfinite_guard"] == {"skipped": 1}


class _NaNGradientAt(L.Callback):
    """At one batch, the final norm's weight gets a NaN gradient while the loss stays finite."""

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx, self.handle = batch_idx, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx:
            self.handle = pl_module.model.norm.weight.register_hook(lambda grad: grad * float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def test_nonfinite_gradient_with_finite_loss_is_skipped(tmp_path: Path, tiny_dataset: Path) -> None:
    from lit_ffn.training.lightning_cli import LitFFNCLI

    args = tiny_fit_args(
        tiny_dataset, tmp_path, "--model.nonfinite=skip", "--trainer.gradient_clip_val=1.0", steps=FIT_STEPS
    )
    cli = LitFFNCLI(args=args[1:], run=False)
    watch = _WatchStep(batch_idx=3)
    cli.trainer.callbacks += [_NaNGradientAt(batch_idx=3), watch]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    assert all(torch.equal(watch.before[k], watch.after[k]) for k in watch.before)  # clipping spread nothing
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
    assert watch.adam_steps == {FIT_STEPS - 1} and cli.model.nonfinite_guard.skipped == 1


def test_nonfinite_gradient_with_finite_loss_stops_the_run(tmp_path: Path, tiny_dataset: Path) -> None:
    from lit_ffn.training.guards import NonFiniteLossError
    from lit_ffn.training.lightning_cli import LitFFNCLI

    args = tiny_fit_args(tiny_dataset, tmp_path, "--checkpoint.every_n_train_steps=2", steps=6)
    cli = LitFFNCLI(args=args[1:], run=False)
    cli.trainer.callbacks.append(_NaNGradientAt(batch_idx=3))
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradients \(the loss was finite\) at step 3;.*step 2"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())
