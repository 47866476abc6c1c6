"""What Lightning prints on the console during ``lit_ffn fit``, minus what says nothing about the run.

Lightning 2.6 logs, through ``rank_zero_info`` (logger ``lightning.pytorch.utilities.rank_zero``):

* promotion lines, ``💡 Tip: For seamless cloud logging … litlogger`` (``_LoggerConnector.configure_logger``)
  and ``💡 Tip: … litmodels`` (``_CallbackConnector._maybe_show_litmodels_tip``) — dropped;
* ``GPU available: False, used: False`` and ``TPU available: False, using: 0 TPU cores``
  (``trainer/setup.py::_log_device_info``) on every run — dropped when the machine has no such device,
  since then there is nothing to choose.  ``GPU available: True (cuda), used: False`` (and ``used: True``)
  stay: they say what the run does with a device that is there, and so does Lightning's warning
  ``GPU available but not used`` (a warning, not filtered).

Lightning has no switch for these lines (its only knob is the level of the whole ``lightning.pytorch``
logger, which would also hide ``Seed set to``, checkpoint restores and ``Trainer.fit stopped``), so a
``logging.Filter`` on that one logger drops exactly these messages.
"""

from __future__ import annotations

import logging
import re

#: The logger Lightning's ``rank_zero_info`` writes to.
RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"

_NOISE = (
    re.compile(r"^💡 Tip:"),  # promotion of Lightning's cloud products
    re.compile(r"^GPU available: False\b"),  # no GPU here: nothing was chosen
    re.compile(r"^TPU available: False\b"),  # no TPU here
)


class QuietConsole(logging.Filter):
    """Drops Lightning's promotion lines and the accelerator lines of devices the machine does not have."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.search(message) for pattern in _NOISE)


def quiet_lightning_console() -> None:
    """Install :class:`QuietConsole` on Lightning's rank-zero logger (once per process)."""
    logger = logging.getLogger(RANK_ZERO_LOGGER)
    if not any(isinstance(existing, QuietConsole) for existing in logger.filters):
        logger.addFilter(QuietConsole())


__all__ = ["RANK_ZERO_LOGGER", "QuietConsole", "quiet_lightning_console"]
