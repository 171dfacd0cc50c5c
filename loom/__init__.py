"""The loom: datasets, metrics and statistics, the judge, the run manifest,
the embedded world and GGUF export.

Importing this package stays light (no torch): the torch-side pieces
(collector, trainer) are imported from their own modules when used.
"""

from meta_spider.loom.datasets import (
    JsonlDataset, MMLUDataset, QADataset, QAExample, QAPrompt, check_answer, export_jsonl,
)
from meta_spider.loom.collect.judge import JudgeError, JudgeVerdict, OpenRouterJudge
from meta_spider.loom.manifest import MANIFEST_FILE, ManifestError, RunManifest
from meta_spider.loom.evaluate.metrics import (
    auroc, choose_threshold, evaluate_at_coverage, expected_calibration_error, prediction_rejection_ratio,
    risk_coverage_curve, score_metrics, selective_metrics,
)
from meta_spider.loom.evaluate.stats import mcnemar_exact, paired_t_test

__all__ = [
    "MANIFEST_FILE",
    "JsonlDataset",
    "JudgeError",
    "JudgeVerdict",
    "MMLUDataset",
    "ManifestError",
    "OpenRouterJudge",
    "QADataset",
    "QAExample",
    "QAPrompt",
    "RunManifest",
    "auroc",
    "check_answer",
    "choose_threshold",
    "evaluate_at_coverage",
    "expected_calibration_error",
    "export_jsonl",
    "mcnemar_exact",
    "paired_t_test",
    "prediction_rejection_ratio",
    "risk_coverage_curve",
    "score_metrics",
    "selective_metrics",
]
