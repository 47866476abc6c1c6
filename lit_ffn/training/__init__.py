"""Training: the LightningModule (``module.py``), the ``lit_ffn fit|validate|test`` CLI
(``lightning_cli.py``) and the one config parser every tool uses (``config.py``), the batch plan
(``batch_plan.py``), the non-finite guard (``guards.py``), atomic checkpoints
(``checkpointing.py``), the learning-rate schedules (``optim.py``) and making a run longer
(``schedule.py``), the end-of-fit block (``summary.py``), the loggers (``logger.py``) and the quiet
console (``console.py``).

Nothing here is imported by the model or the FFNs; import the submodules themselves.
"""
