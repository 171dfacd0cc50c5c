"""Evaluation: how good the Doubter's P(correct) is and what it buys an agent.

``metrics`` and ``stats`` (AUROC, calibration, selective metrics, paired
tests), ``evaluation`` (``metaloom eval`` on a run), ``baselines`` (the
scores the Doubter is compared with), ``comparison``
(:class:`BaselineComparison`) and ``report`` (its report), ``shifts`` (the
held-out shift splits side by side), ``agentic`` (agents with and without the
Doubter on the same tasks), ``benchmark_tasks`` and ``plots``.
"""
