"""Evaluation: how good the Doubter's P(correct) is and what it buys an agent.

``metrics`` and ``stats`` (AUROC, calibration, selective metrics, paired
tests), ``evaluation`` (``metaloom eval`` on a run), ``baselines``
(:class:`BaselineComparison`), ``shifts`` (the held-out shift splits side by
side), ``comparison`` and ``agentic`` (agents with and without the Doubter on
the same tasks), ``benchmark_tasks`` and ``plots``.
"""
