"""Experiments: ``lit_ffn ablate`` (``study.py`` what a study is, ``ablate.py`` running it,
``report.py`` its results), the statistics (``stats.py``), parameter counts (``params.py``,
``lit_ffn params``), plots (``plots.py``, ``lit_ffn plots``) and the TensorBoard event reader
(``events.py``).
"""
