"""lit_ffn's Decoder as an lm-evaluation-harness language model (``lm_eval.api.model.TemplateLM``).

No export is needed, so every FFN — built-in or a user's class — is evaluated as it was trained.
Text is encoded with the dataset's tokenizer (:class:`~lit_ffn.data.tokenizer.Tokenizer`, ordinary
text: a literal ``<|endoftext|>`` in a prompt stays text), the EOS id of the data is lm_eval's
"end of text" token (the conditioning token of an empty context and of rolling windows, and a stop
token of generation), as ``HFLM`` does for a tokenizer without BOS, so the scores equal lm_eval's
``--model hf`` on the model exported by ``lit_ffn export`` (same ids, same logits).

The three request types (``lm_eval.api.instance.Instance.args``):

* ``loglikelihood`` ``(context, continuation)`` → ``(Σ_i log p(c_i | x, c_<i), all c_i greedy)``;
  lm_eval's :class:`~lm_eval.api.model.TemplateLM` encodes the pair (``ctx + cont`` encoded whole,
  trailing spaces of the context moved to the continuation) and this class scores the tokens;
* ``loglikelihood_rolling`` ``(text,)`` → ``Σ_t log p(x_t | x_<t)`` over the whole text, in windows
  of ``max_length`` tokens (``lm_eval.utils.get_rolling_token_windows``: each token predicted once,
  the first conditioned on EOS);
* ``generate_until`` ``(context, gen_kwargs)`` → the continuation up to the first ``until`` string,
  EOS, or ``max_gen_toks`` tokens (:func:`lit_ffn.inference.generate.generate`, KV cache).

Batching by length: scoring requests are sorted by token length, longest first, and run ``batch_size``
at a time, right-padded (a causal model's real positions never see the padding); only the
continuation positions are projected to the vocabulary, so a batch builds (Σ continuation tokens, V)
logits, not (B, T, V).  Generation batches requests of equal prompt length and equal ``gen_kwargs``.
Inputs longer than ``max_length`` (by default the run's training ``data.seq_len``) keep their last
``max_length`` tokens, as lm_eval's own models do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from lit_ffn.data.tokenizer import Tokenizer
from lit_ffn.errors import UserError
from lit_ffn.inference.generate import generate
from lit_ffn.inference.sampling import Sampling
from lit_ffn.model import Decoder

log = logging.getLogger(__name__)

#: generation kwargs of task YAMLs this model honours; others are reported once and ignored.
SUPPORTED_GEN_KWARGS = ("do_sample", "temperature", "top_k", "top_p")

#: a tokenized scoring request: (request strings, context ids, continuation ids), as TemplateLM passes it
TokenRequest = tuple[Any, list[int], list[int]]


def _batches(order: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield list(order[start : start + size])


class LitFFNLM(TemplateLM):
    """An lm_eval model over a trained :class:`~lit_ffn.model.Decoder`.

    Args:
        decoder: the model (eval mode; it is moved to ``device``).
        tokenizer: the tokenizer of the data it was trained on.
        max_length: the longest input in tokens (default 2048; :func:`evaluate_checkpoint` passes the run's
            training ``data.seq_len``).
        batch_size: requests per forward pass.
        device: where the model runs.
        max_gen_toks: tokens generated when a task's ``generation_kwargs`` set no maximum.
        seed: seed of the generator for tasks that sample (``do_sample: true``).
    """

    def __init__(
        self,
        decoder: Decoder,
        tokenizer: Tokenizer,
        max_length: int = 2048,
        batch_size: int = 16,
        device: str | torch.device = "cpu",
        max_gen_toks: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if max_length < 2:
            raise UserError(f"--max-length must be at least 2 tokens, got {max_length}")
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        self._device = torch.device(device)
        self.decoder = decoder.to(self._device).eval()
        self.lit_tokenizer = tokenizer
        self._max_length = max_length
        self.batch_size = batch_size
        self._max_gen_toks = max_gen_toks
        self.generator = torch.Generator(device=self._device).manual_seed(seed)
        self._ignored_kwargs: set[str] = set()

    # ------------------------------------------------------------ lm_eval's interface
    @property
    def eot_token_id(self) -> int:
        return self.lit_tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return self.lit_tokenizer.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Ordinary-text ids (no BOS/EOS added: the tokenizer has none to add)."""
        return self.lit_tokenizer.encode(string)

    def tok_decode(self, tokens: Sequence[int], **kwargs: Any) -> str:
        return self.lit_tokenizer.decode(tokens)

    def get_model_info(self) -> dict[str, Any]:
        """Recorded by lm_eval in ``results["config"]``."""
        return {
            "model_num_parameters": self.decoder.num_parameters(),
            "model_dtype": str(self.decoder.embed.weight.dtype),
            "tokenizer": self.lit_tokenizer.name,
            "max_length": self.max_length,
        }

    # ------------------------------------------------------------ scoring
    @torch.inference_mode()
    def _loglikelihood_tokens(
        self, requests: list[TokenRequest], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        """``(Σ log p(continuation | context), continuation is the greedy one)`` for tokenized requests.

        Input of a request: the last ``max_length`` tokens of ``context + continuation[:-1]``; scored: the
        positions that predict the continuation tokens."""
        inputs: list[list[int]] = []
        for _, context, continuation in requests:
            if len(continuation) > self.max_length:
                raise UserError(
                    f"a continuation of {len(continuation)} tokens is longer than the model's context "
                    f"({self.max_length} tokens): raise --max-length"
                )
            inputs.append((context + continuation)[-(self.max_length + 1) :][:-1])
        order = sorted(range(len(requests)), key=lambda i: (-len(inputs[i]), i))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc="loglikelihood requests")
        for batch in _batches(order, self.batch_size):
            width = max(len(inputs[i]) for i in batch)
            tokens = torch.full((len(batch), width), self.eot_token_id, dtype=torch.long)
            for row, i in enumerate(batch):
                tokens[row, : len(inputs[i])] = torch.tensor(inputs[i], dtype=torch.long)
            hidden = self.decoder(tokens.to(self._device))  # (B, W, D)
            # the continuation's positions of every row, concatenated: (Σ c, D) → (Σ c, V) log-probs
            picked = [hidden[row, len(inputs[i]) - len(requests[i][2]) : len(inputs[i])] for row, i in enumerate(batch)]
            logprobs = torch.log_softmax(self.decoder.logits(torch.cat(picked)).float(), dim=-1)
            targets = torch.tensor([t for i in batch for t in requests[i][2]], dtype=torch.long, device=self._device)
            token_logprobs = logprobs.gather(-1, targets[:, None]).squeeze(-1).tolist()
            greedy = (logprobs.argmax(dim=-1) == targets).tolist()
            start = 0
            for i in batch:
                end = start + len(requests[i][2])
                results[i] = (float(sum(token_logprobs[start:end])), bool(all(greedy[start:end])))
                start = end
                self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
            progress.update(len(batch))
        progress.close()
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts, each token predicted once, in windows of ``max_length`` tokens."""
        windows: list[TokenRequest] = []
        owners: list[int] = []
        for index, request in enumerate(requests):
            (text,) = request.args
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(
                    token_list=self.tok_encode(text),
                    prefix_token=self.eot_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                ),
            ):
                windows.append((None, context, continuation))
                owners.append(index)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, scores):
            totals[owner] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # ------------------------------------------------------------ generation
    def _sampling(self, kwargs: dict[str, Any]) -> Sampling:
        ignored = sorted(set(kwargs) - set(SUPPORTED_GEN_KWARGS) - self._ignored_kwargs)
        if ignored:
            log.warning(
                "lit_ffn evaluate: ignoring generation kwargs %s (supported: %s)", ignored, SUPPORTED_GEN_KWARGS
            )
            self._ignored_kwargs.update(ignored)
        if not kwargs.get("do_sample"):
            return Sampling()
        top_k, top_p = kwargs.get("top_k") or None, kwargs.get("top_p")  # HF's top_k=0 and top_p=1: no filter
        return Sampling(float(kwargs.get("temperature", 1.0)), top_k, top_p)

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Continuations of each context up to the first stop string of its ``until``, EOS or ``max_gen_toks``."""
        eos_text = self.tok_decode([self.eot_token_id])
        prepared = []
        for request in requests:
            context, gen_kwargs = request.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_new = int(kwargs.pop("max_gen_toks"))
            room = self.max_length - max_new
            if room < 1:
                raise UserError(
                    f"a task asks for {max_new} generated tokens but the model's context is {self.max_length}: "
                    "raise --max-length"
                )
            ids = self.tok_encode(context)[-room:] or [self.eot_token_id]
            prepared.append((ids, until, max_new, kwargs))
        groups: dict[tuple[int, str], list[int]] = {}
        for index, (ids, until, max_new, kwargs) in enumerate(prepared):
            key = json.dumps([until, max_new, kwargs], sort_keys=True, default=str)
            groups.setdefault((len(ids), key), []).append(index)
        results: list[str | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc="generate_until requests")
        for (_, _), indices in sorted(groups.items(), key=lambda item: -item[0][0]):
            _, until, max_new, kwargs = prepared[indices[0]]
            sampling = self._sampling(kwargs)
            for batch in _batches(indices, self.batch_size):
                prompt = torch.tensor([prepared[i][0] for i in batch], dtype=torch.long, device=self._device)

                def stop(row: int, tokens: list[int], until: list[str] = until) -> bool:
                    text = self.tok_decode(tokens)
                    return any(term and term in text for term in until)

                outputs = generate(
                    self.decoder, prompt, max_new, sampling, self.eot_token_id, self.generator, stop=stop
                )
                for i, tokens in zip(batch, outputs):
                    text = self.tok_decode(tokens)
                    for term in until:
                        if term:
                            text = text.split(term)[0]
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                progress.update(len(batch))
        progress.close()
        return results  # type: ignore[return-value]


__all__ = ["SUPPORTED_GEN_KWARGS", "LitFFNLM"]
