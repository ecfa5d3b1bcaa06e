"""Downstream (transfer) tasks: one file per head or evaluator.

Each is built from ``conf/downstream/<name>.yaml`` and keeps the contract of ``task.py``:
``evaluate(backbone, data, make_trainer)``
returning flat metrics with at least ``score`` (higher is better) and ``score_name``.
"""
