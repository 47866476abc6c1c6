"""The models ``lit_ffn bench`` times: lit_ffn's decoder, and transformers' Qwen3 and litgpt's GPT (Qwen3
config) with the same shape and the same initial weights."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from lit_ffn._lightning import configure_optimizers_without_trainer
from lit_ffn.bench.settings import ModelConfigs, Settings
from lit_ffn.errors import UserError
from lit_ffn.ffn.registry import variant_name
from lit_ffn.flops import flops_per_token


class Runner:
    """One model with its optimizer: ``step(tokens, targets)`` runs one training step, returns the loss."""

    def __init__(
        self,
        name: str,
        impl: str,
        ffn: str,
        module: torch.nn.Module,
        settings: Settings,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        num_params: int,
        flops_per_token: float,
    ) -> None:
        self.name, self.impl, self.ffn, self.module, self.settings = name, impl, ffn, module, settings
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.num_params, self.flops_per_token = num_params, flops_per_token
        self.times: list[float] = []
        hparams = getattr(module, "hparams", {})
        self.loss_chunk_size: int | None = hparams.get("loss_chunk_size") if impl == "lit_ffn" else None
        self.loss_impl: str | None = hparams.get("loss_impl", "auto") if impl == "lit_ffn" else None
        self.cpu_times: list[float] = []  # process CPU time (all threads) per step: less sensitive to a shared CPU
        self.losses: list[float] = []
        self.peak_mem: int | None = None
        self.initial_weights: dict[str, torch.Tensor] | None = None  # lit_ffn SwiGLU under --compare-hf
        self.error: str | None = None

    def release(self) -> None:
        """Drop the model, its gradients and optimizer state (after an out-of-memory error)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.state.clear()
        self.module, self.params, self.loss_fn = torch.nn.Module(), [], None  # type: ignore[assignment]
        gc.collect()
        if self.settings.device.type == "cuda":
            torch.cuda.empty_cache()

    def step(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        settings = self.settings
        with torch.autocast(settings.device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16-mixed"):
            loss = self.loss_fn(tokens, targets)
        loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def _prepare_module(module: torch.nn.Module, settings: Settings) -> torch.nn.Module:
    module.to(settings.device)
    if settings.precision == "bf16-true":
        module.to(torch.bfloat16)
    return module.train()


def lit_runner(
    configs: ModelConfigs,
    ffn: dict[str, Any] | None,
    settings: Settings,
    loss_chunk_size: int | None = None,
    keep_initial_weights: bool = False,
    loss_impl: str | None = None,
) -> Runner:
    torch.manual_seed(settings.seed)
    overrides: dict[str, Any] = {}
    if loss_chunk_size is not None:
        overrides["loss_chunk_size"] = loss_chunk_size
    if loss_impl is not None:
        overrides["loss_impl"] = loss_impl
    if settings.compile:
        overrides["compile"] = True
    lit = configs.build(ffn, overrides)
    # transformers' copy must start from the same weights, taken before any warm-up step changes them
    initial = hf_state_dict(lit.model, clone=True) if keep_initial_weights else None
    checkpointing = bool(lit.hparams.get("activation_checkpointing"))
    if settings.compile or checkpointing:  # what LitDecoder.configure_model() does without FSDP2
        from lit_ffn.distributed import parallelize

        parallelize(
            lit.model,
            compile=settings.compile,
            activation_checkpointing=checkpointing,
            compile_backend=settings.compile_backend,
        )
    _prepare_module(lit, settings)
    variant = variant_name(ffn if ffn is not None else configs.config.model.ffn)
    name = f"lit_ffn {variant}"
    if loss_chunk_size is not None:
        name += f" (loss chunk {loss_chunk_size})" if loss_chunk_size else " (plain loss)"
    if loss_impl is not None:
        name += f" (loss {loss_impl})"
    runner = Runner(
        name=name,
        impl="lit_ffn",
        ffn=variant,
        module=lit,
        settings=settings,
        loss_fn=lit,
        optimizer=fit_optimizer(lit, settings),
        num_params=lit.model.num_parameters(),
        flops_per_token=flops_per_token(lit.model, settings.seq_len),
    )
    runner.initial_weights = initial
    return runner


def fit_optimizer(lit: Any, settings: Settings) -> torch.optim.Optimizer:
    """The optimizer ``lit_ffn fit`` would use: ``LitDecoder.configure_optimizers()`` with a stand-in for the
    Trainer (it only reads the schedule length)."""
    configured = configure_optimizers_without_trainer(lit, max_steps=settings.warmup + settings.steps)
    return configured["optimizer"] if isinstance(configured, dict) else configured


def hf_runner(reference: Runner, settings: Settings) -> Runner:
    """transformers' Qwen3ForCausalLM with the shape and the weights of ``reference`` (a lit_ffn SwiGLU runner)."""
    try:
        import transformers
    except ImportError:
        raise UserError("--compare-hf needs transformers: pip install transformers (or lit_ffn[dev])") from None
    lit = reference.module
    decoder, hp = lit.model, lit.hparams
    config = transformers.Qwen3Config(
        vocab_size=hp.vocab_size,
        hidden_size=hp.dim,
        intermediate_size=decoder.layers[0].ffn.hidden_dim,
        num_hidden_layers=hp.n_layers,
        num_attention_heads=hp.n_heads,
        num_key_value_heads=hp.n_kv_heads,
        head_dim=hp.head_dim,
        rope_theta=hp.rope_theta,
        rms_norm_eps=hp.norm_eps,
        tie_word_embeddings=hp.tie_embeddings,
        attention_bias=False,
        initializer_range=hp.init_std,
        max_position_embeddings=max(settings.seq_len, 128),
        use_cache=False,
    )
    config._attn_implementation = "sdpa"
    hf = transformers.Qwen3ForCausalLM(config)
    missing, unexpected = hf.load_state_dict(reference.initial_weights, strict=False)
    if unexpected or set(missing) - ({"lm_head.weight"} if hp.tie_embeddings else set()):
        raise RuntimeError(f"lit_ffn → transformers weight copy: missing {missing}, unexpected {unexpected}")
    if hp.tie_embeddings:
        hf.tie_weights()
    hf = _prepare_module(hf, settings)

    def loss_fn(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # targets are already shifted: shift_labels= tells transformers' ForCausalLMLoss not to shift again
        return hf(input_ids=tokens, labels=targets, shift_labels=targets).loss

    return peer_runner(
        "transformers Qwen3ForCausalLM", "transformers", hf, hf.model.layers, loss_fn, reference, settings
    )


def peer_runner(
    name: str,
    impl: str,
    module: torch.nn.Module,
    blocks: Any,
    loss_fn: Any,
    reference: Runner,
    settings: Settings,
) -> Runner:
    """A peer's :class:`Runner` beside ``reference`` (a lit_ffn SwiGLU runner): its ``blocks`` compiled one by one
    as lit_ffn's are (``--compile``), ``reference``'s AdamW and FLOPs per token (the same shape)."""
    if settings.compile:
        for block in blocks:
            block.compile(backend=settings.compile_backend)
    return Runner(
        name=name,
        impl=impl,
        ffn="SwiGLU",
        module=module,
        settings=settings,
        loss_fn=loss_fn,
        optimizer=peer_optimizer(module, reference),
        num_params=sum(p.numel() for p in module.parameters()),
        flops_per_token=reference.flops_per_token,
    )


def peer_optimizer(module: torch.nn.Module, reference: Runner) -> torch.optim.Optimizer:
    """The same AdamW as ``reference``'s (hyperparameters, fused or not, the schedule's current lr), with
    weight decay only on matrices as lit_ffn's."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    weight_decay = reference.module.hparams.weight_decay
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    defaults = reference.optimizer.defaults
    return torch.optim.AdamW(
        groups,
        **{k: defaults[k] for k in ("betas", "eps", "fused", "foreach")},
        lr=reference.optimizer.param_groups[0]["lr"],
    )


def litgpt_runner(reference: Runner, settings: Settings) -> Runner:
    """litgpt's ``GPT`` with a Qwen3 config of ``reference``'s shape (a lit_ffn SwiGLU runner), its weights
    copied in by litgpt's own Qwen3 checkpoint converter, trained with litgpt pretraining's loss
    (``litgpt.utils.chunked_cross_entropy`` on the full logits). litgpt has no tied-embedding option for
    Qwen3; the head is tied by hand (``lm_head.weight`` is ``wte.weight``) so both models are the same."""
    try:
        from litgpt.config import Config
        from litgpt.model import GPT
        from litgpt.scripts.convert_hf_checkpoint import copy_weights_qwen_3
        from litgpt.utils import chunked_cross_entropy
    except ImportError as err:
        raise UserError(
            f"--compare-litgpt needs litgpt ({err}): pip install --no-deps litgpt==0.5.13 "
            "(its other requirements are lit_ffn's own; without --no-deps pip would downgrade jsonargparse)"
        ) from None
    lit = reference.module
    decoder, hp = lit.model, lit.hparams
    config = Config(
        name="lit_ffn-bench-qwen3",
        block_size=settings.seq_len,
        vocab_size=hp.vocab_size,
        padded_vocab_size=hp.vocab_size,
        n_layer=hp.n_layers,
        n_head=hp.n_heads,
        n_embd=hp.dim,
        n_query_groups=hp.n_kv_heads,
        head_size=hp.head_dim,
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        norm_class_name="RMSNorm",
        norm_eps=hp.norm_eps,
        norm_qk=True,
        mlp_class_name="LLaMAMLP",
        intermediate_size=decoder.layers[0].ffn.hidden_dim,
        rope_base=int(hp.rope_theta),
    )
    gpt = GPT(config)
    state: dict[str, torch.Tensor] = {}
    copy_weights_qwen_3(config, {}, state, dict(reference.initial_weights))
    gpt.load_state_dict(state, strict=True)
    if hp.tie_embeddings:
        gpt.lm_head.weight = gpt.transformer.wte.weight
    gpt = _prepare_module(gpt, settings)

    def loss_fn(tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return chunked_cross_entropy(gpt(tokens), targets)  # as litgpt/pretrain.py's training step

    return peer_runner("litgpt GPT (Qwen3 config)", "litgpt", gpt, gpt.transformer.h, loss_fn, reference, settings)


def hf_state_dict(decoder: Any, clone: bool = False) -> dict[str, torch.Tensor]:
    """lit_ffn Decoder weights under transformers' Qwen3 names (the inverse of tests/test_model_parity.py's map)."""
    renames = {
        "embed.weight": "model.embed_tokens.weight",
        "norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight",
    }
    parts = {
        "attn.": "self_attn.",
        "attn_norm.": "input_layernorm.",
        "ffn_norm.": "post_attention_layernorm.",
        "ffn.": "mlp.",
    }
    out = {}
    for name, weight in decoder.state_dict().items():
        tensor = weight.detach().clone() if clone else weight
        if name.startswith("layers."):
            index, _, rest = name.removeprefix("layers.").partition(".")
            for old, new in parts.items():
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
                    break
            out[f"model.layers.{index}.{rest}"] = tensor
        else:
            out[renames[name]] = tensor
    return out


__all__ = ["Runner", "fit_optimizer", "hf_runner", "hf_state_dict", "lit_runner", "litgpt_runner", "peer_optimizer"]
