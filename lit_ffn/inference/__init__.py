"""After training: generate text, evaluate on downstream tasks, export to Hugging Face.

* :mod:`~lit_ffn.inference.loading` — any checkpoint (file, sharded directory, run directory) → Decoder + tokenizer
* :mod:`~lit_ffn.inference.sampling`, :mod:`~lit_ffn.inference.generate` — KV-cached decoding (``lit_ffn generate``)
* :mod:`~lit_ffn.inference.lm_eval_adapter`, :mod:`~lit_ffn.inference.evaluate` — lm-evaluation-harness
  (``lit_ffn evaluate``; the optional extra ``[eval]``)
* :mod:`~lit_ffn.inference.export`, :mod:`~lit_ffn.inference.remote_code`,
  :mod:`~lit_ffn.inference.hf_tokenizer` — transformers Qwen3 directories (``lit_ffn export``): stock
  Qwen3ForCausalLM where Qwen3MLP can compute the FFN, remote code shipping the FFN's source otherwise
* :mod:`~lit_ffn.inference.cli` — the three commands' argument parsing

Imports stay light here: lm_eval and transformers are imported only by the modules that need them.
"""
