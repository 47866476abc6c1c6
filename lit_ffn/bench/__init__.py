"""``lit_ffn bench``: training throughput of lit_ffn (and of transformers' Qwen3) on this device.

``settings.py`` (what a run shares, configs parsed by ``fit``'s parser) → ``runners.py`` (the models)
→ ``measure.py`` (memory, interleaved timing) → ``report.py`` (JSON + Markdown); ``cli.py`` is the
command line and its docstring says what is timed and how MFU is computed (:mod:`lit_ffn.flops`).
"""

from lit_ffn.bench.cli import bench, check_output_path, main
from lit_ffn.bench.report import build_report, render_markdown
from lit_ffn.bench.runners import Runner, hf_state_dict

__all__ = ["Runner", "bench", "build_report", "check_output_path", "hf_state_dict", "main", "render_markdown"]
