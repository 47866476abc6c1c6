"""Autoregressive decoding of a :class:`~lit_ffn.model.Decoder`, incremental with a KV cache.

For a prompt x_1 … x_T0 the loop draws x_{t+1} ~ p(· | x_≤t) (:mod:`lit_ffn.inference.sampling`)
until ``max_new_tokens`` tokens, the EOS id, or a caller's stop rule.

With the cache (default) the prompt is run once (prefill: one causal forward of (B, T0) that stores
every layer's keys and values), then each step runs only the newest token (B, 1) against the cached
keys: a step costs O(t) attention and O(1) matmuls instead of re-running all t positions.  Without
it (``use_cache=False``) every step re-runs the whole sequence; the two give the same tokens
(tested), which is what the uncached path is kept for.

Rows of a batch share one prompt length (no padding: RoPE positions stay those of training);
callers batch prompts of equal token length (:mod:`lit_ffn.inference.lm_eval_adapter`) or decode
one prompt at a time (``lit_ffn generate``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lit_ffn.inference.sampling import GREEDY, Sampling, next_token
from lit_ffn.model import Decoder, KVCache

#: ``stop(row, tokens_so_far) -> bool``: end that row's generation after its latest token.
StopRule = Callable[[int, list[int]], bool]


@torch.inference_mode()
def generate(
    decoder: Decoder,
    prompt: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    stop: StopRule | None = None,
) -> list[list[int]]:
    """Continue each row of ``prompt`` (B, T0) int64 ids (T0 ≥ 1) by up to ``max_new_tokens`` tokens.

    Returns the B generated id lists, without the prompt; a row ends before its EOS (not included)
    or after the token for which ``stop`` returned True.  The decoder should be in eval mode.
    """
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be (B, T0) ids with T0 ≥ 1, got shape {tuple(prompt.shape)}")
    batch, prompt_len = prompt.shape
    generated: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    if max_new_tokens <= 0:
        return generated
    cache = KVCache.for_decoder(decoder, batch, prompt_len + max_new_tokens) if use_cache else None
    sequence = prompt
    hidden = decoder(prompt, cache=cache)  # (B, T0, D)
    for step in range(max_new_tokens):
        token = next_token(decoder.logits(hidden[:, -1]), sampling, generator)  # (B,)
        for row, value in enumerate(token.tolist()):
            if done[row]:
                continue
            if value == eos_id:
                done[row] = True
                continue
            generated[row].append(value)
            if stop is not None and stop(row, generated[row]):
                done[row] = True
        if all(done) or step == max_new_tokens - 1:
            break
        if cache is not None:
            hidden = decoder(token[:, None], cache=cache)  # (B, 1, D)
        else:
            sequence = torch.cat([sequence, token[:, None]], dim=1)
            hidden = decoder(sequence)
    return generated


__all__ = ["StopRule", "generate"]
