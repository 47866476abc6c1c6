"""Lightning callbacks that complete lit_ffn's TensorBoard picture, one module each.

* :class:`GateStatistics` (``gates.py``, maths in ``gate_stats.py``) — per-layer statistics of what
  each FFN records as its gate, learned scalars such as DynamicGEGLU's ``s`` and ``b``, histograms.
* :class:`GradNormMonitor` (``grad_norm.py``) — ``vitals/grad_norm`` before clipping.
* :class:`TokenThroughputMonitor` (``throughput.py``) — tokens seen, tokens/s, FLOP/s, MFU, step time,
  peak GPU memory.
* :class:`HyperparameterSummary` (``hparams.py``) — one flat HPARAMS session per run.
* :class:`DownstreamEval` (``downstream.py``) — lm-eval tasks scored every N steps during training (opt-in).
* :class:`LoggingStepAlignment` (``logging_step.py``) — added by ``lit_ffn fit``: a resumed fit logs at the right step.

All four are enabled in ``configs/quickstart.yaml``; configs name them as ``lit_ffn.callbacks.<Class>``.
"""

from lit_ffn.callbacks.downstream import DownstreamEval
from lit_ffn.callbacks.gates import GateStatistics, gate_recorders
from lit_ffn.callbacks.grad_norm import GradNormMonitor
from lit_ffn.callbacks.hparams import HyperparameterSummary, run_hyperparameters
from lit_ffn.callbacks.throughput import TokenThroughputMonitor

__all__ = [
    "DownstreamEval",
    "GateStatistics",
    "GradNormMonitor",
    "HyperparameterSummary",
    "TokenThroughputMonitor",
    "gate_recorders",
    "run_hyperparameters",
]
