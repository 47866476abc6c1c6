"""The FFN zoo: drop-in position-wise feed-forward blocks, ``(..., dim) → (..., dim)``.

Every built-in is parameter-matched by default (see :mod:`lit_ffn.ffn.base`):
2-matrix FFNs (:mod:`~lit_ffn.ffn.mlp`) and 3-matrix gated FFNs
(:mod:`~lit_ffn.ffn.glu`, :class:`DynamicGEGLU`, :class:`IsoGMLP`) have the
same number of matrix parameters at every width.  ``BUILTIN_FFNS`` maps the
names of the configs in ``configs/ffn/<name>.yaml`` to their classes (the
``*_tanh`` names share the class of their exact-GELU sibling; the config sets
``approximate: tanh``).
"""

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, GateRecorder, matched_hidden_dim
from lit_ffn.ffn.dynamic_geglu import DynamicGEGLU
from lit_ffn.ffn.glu import GEGLU, GLU, Bilinear, GatedFFN, ReGLU, SwiGLU
from lit_ffn.ffn.iso_gmlp import IsoGMLP
from lit_ffn.ffn.mlp import GELUFFN, MLPFFN, ReLU2FFN, ReLUFFN, SiLUFFN

BUILTIN_FFNS: dict[str, type] = {
    "relu": ReLUFFN,
    "gelu": GELUFFN,
    "gelu_tanh": GELUFFN,
    "silu": SiLUFFN,
    "relu2": ReLU2FFN,
    "glu": GLU,
    "bilinear": Bilinear,
    "reglu": ReGLU,
    "geglu": GEGLU,
    "geglu_tanh": GEGLU,
    "swiglu": SwiGLU,
    "dynamic_geglu": DynamicGEGLU,
    "iso_gmlp": IsoGMLP,
}

__all__ = [
    "BUILTIN_FFNS",
    "DEFAULT_MULTIPLE_OF",
    "Bilinear",
    "DynamicGEGLU",
    "GEGLU",
    "GELUFFN",
    "GLU",
    "GateRecorder",
    "GatedFFN",
    "IsoGMLP",
    "MLPFFN",
    "ReGLU",
    "ReLU2FFN",
    "ReLUFFN",
    "SiLUFFN",
    "SwiGLU",
    "matched_hidden_dim",
]
