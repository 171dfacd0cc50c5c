"""The risk-coverage plot of a comparison report, as a PNG.

One curve per confidence score (the Doubter's P(correct) and each baseline
with a score column), risk = share of wrong base answers among the answered
ones, answering the most confident questions first; the Doubter system's
generated behaviour is one marked point (its coverage and 1 - selective
accuracy), the base's error rate a dashed line.

matplotlib is optional (``pip install 'meta-spider[plot]'``) and imported
only here, with the non-interactive Agg canvas, so no global pyplot state
or display is touched. This module knows nothing about models.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from meta_spider.loom.evaluate.baselines import BASELINES
from meta_spider.loom.evaluate.metrics import risk_coverage_curve
from meta_spider.plugins.errors import MetaSpiderError

if TYPE_CHECKING:
    from meta_spider.loom.evaluate.comparison import ComparisonReport

__all__ = ["PlotDependencyError", "plot_risk_coverage"]


class PlotDependencyError(MetaSpiderError, ImportError, fields=("cause",)):
    """matplotlib is not installed."""

    template = ("the risk-coverage plot needs matplotlib ({cause}); install it with "
                "`pip install 'meta-spider[plot]'`, or pass --no-plot")


def plot_risk_coverage(report: "ComparisonReport", path: Union[str, Path], *, dpi: int = 120) -> Path:
    """Write the risk-coverage plot of ``report`` to ``path`` (PNG) and
    return the path. Raises :class:`PlotDependencyError` without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotDependencyError(str(error)) from None

    questions = report.questions
    oracle = np.array([q.pass1_correct for q in questions], dtype=bool)
    series = [("Doubter P(correct)", "p_correct")]
    series += [(spec.name, spec.column) for spec in BASELINES if spec.column is not None]
    figure = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for label, column in series:
        values = [getattr(q, column) for q in questions]
        if any(v is None for v in values):
            continue
        curve = risk_coverage_curve(np.asarray(values, dtype=np.float64), oracle)
        axes.plot(curve.coverage, curve.risk, marker="." if curve.coverage.size <= 50 else None,
                  label=f"{label} (AURC {curve.aurc:.3f})", linewidth=2.0 if column == "p_correct" else 1.2)
    base_risk = 1.0 - report.behaviour.base_accuracy
    axes.axhline(base_risk, color="grey", linestyle="--", linewidth=1.0, label=f"base error rate {base_risk:.3f}")
    if report.behaviour.selective_accuracy is not None:
        axes.plot([report.behaviour.coverage], [1.0 - report.behaviour.selective_accuracy], marker="*",
                  markersize=14, color="black", linestyle="none", label="Doubter system (generated text)")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("coverage (share of questions answered)")
    axes.set_ylabel("risk (share of answers that are wrong)")
    info = report.benchmark
    axes.set_title(f"Risk-coverage: {info.get('dataset', '?')} / {info.get('split', '?')}, n={report.behaviour.n}")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi)
    return path
