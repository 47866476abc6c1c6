"""Seeds by role: one knob (``seed_everything``) and, under it, one stream per source of randomness.

A run has three random streams, each with its own seed::

    stream                 seed (default)                       what it decides
    model init             model.init_seed  (= seed_everything) every tensor's initial value
    data order             data.seed        (= seed_everything) the order of training blocks (litdata shuffle)
    global torch stream    seed_everything                      anything else (nothing in a lit_ffn fit draws
                                                                from it after the model is built: no dropout)

``lit_ffn fit`` writes the resolved ``model.init_seed`` and ``data.seed`` into the run's
``config.yaml`` (and HPARAMS shows ``init_seed`` and ``data_seed``), so a study can hold one stream
fixed and vary the other: ``--model.init_seed=0`` varies only the data order with
``--seed_everything``, ``--data.seed=0`` only the initial weights.

The init stream is split further by tensor name (:func:`path_seed`): tensor ``path`` of a model with
init seed ``s`` is drawn from ``torch.Generator().manual_seed(path_seed(s, path))``, as Levanter splits
its model key per layer and projection — so two models that share a module name and shape start that
module identically whatever else differs (:meth:`lit_ffn.model.Decoder.init_weights`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from lit_ffn.errors import UserError
from lit_ffn.parameter_names import unwrapped_parameter_name  # a tensor keeps one name, wrapped or not


def path_seed(init_seed: int, path: str) -> int:
    """The seed of the stream of tensor (or module) ``path`` under ``init_seed``: the first 63 bits of
    ``BLAKE2b("<init_seed>/<path>")``, little-endian.  A stable hash (Python's ``hash`` of a string
    changes from one interpreter to the next), so the same seed and name give the same stream everywhere."""
    digest = hashlib.blake2b(f"{int(init_seed)}/{unwrapped_parameter_name(path)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def check_seed(name: str, value: Any) -> None:
    """One line unless ``value`` is ``None`` (derive it from ``seed_everything``) or a non-negative integer."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(
            f"{name}={value!r}: must be a non-negative integer (or null: the same as seed_everything), e.g. {name}=0"
        )


__all__ = ["check_seed", "path_seed"]
