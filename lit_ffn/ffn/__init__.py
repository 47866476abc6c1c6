"""The FFN zoo: drop-in position-wise feed-forward blocks, ``(..., dim) → (..., dim)``.

Every built-in is parameter-matched by default (see :mod:`lit_ffn.ffn.base`):
2-matrix FFNs (:mod:`~lit_ffn.ffn.mlp`) and 3-matrix gated FFNs
(:mod:`~lit_ffn.ffn.glu`, :class:`DynamicGEGLU`, :class:`IsoGMLP`) have the
same number of matrix parameters at every width.  :mod:`~lit_ffn.ffn.registry` holds
the built-in variants by the names of ``configs/ffn/<name>.yaml`` (``BUILTINS``,
``BUILTIN_FFNS``) and everything that names, lists or builds an FFN from a config.
"""

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, GateRecorder, matched_hidden_dim
from lit_ffn.ffn.dynamic_geglu import DynamicGEGLU
from lit_ffn.ffn.glu import GEGLU, GLU, Bilinear, GatedFFN, ReGLU, SwiGLU
from lit_ffn.ffn.iso_gmlp import IsoGMLP
from lit_ffn.ffn.mlp import GELUFFN, MLPFFN, ReLU2FFN, ReLUFFN, SiLUFFN
from lit_ffn.ffn.registry import BUILTIN_FFNS, BUILTINS

__all__ = [
    "BUILTINS",
    "BUILTIN_FFNS",
    "DEFAULT_MULTIPLE_OF",
    "GEGLU",
    "GELUFFN",
    "GLU",
    "MLPFFN",
    "Bilinear",
    "DynamicGEGLU",
    "GateRecorder",
    "GatedFFN",
    "IsoGMLP",
    "ReGLU",
    "ReLU2FFN",
    "ReLUFFN",
    "SiLUFFN",
    "SwiGLU",
    "matched_hidden_dim",
]
