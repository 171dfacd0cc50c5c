"""``meta_loom``: the published name of collection, training, comparisons
and benchmarks. Every name is the project's own object (``meta_spider.loom``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import lazy_exports

EXPORTS = {
    "ActivationDatasetCollector": "meta_spider.loom.collector",
    "ActivationDataset": "meta_spider.loom.activations",
    "Trainer": "meta_spider.loom.trainer",
    "TrainingResult": "meta_spider.loom.trainer",
    "TrainerConfig": "meta_spider.loom.trainer_config",
    "QABenchmark": "meta_spider.loom.evaluation",
    "BenchmarkTask": "meta_spider.loom.benchmark_tasks",
    "classify_action": "meta_spider.loom.evaluation",
    "EvalHarness": "meta_spider.loom.evaluation",
    "HarnessTask": "meta_spider.loom.evaluation",
    "BaselineComparison": "meta_spider.loom.comparison",
    "ComparisonReport": "meta_spider.loom.comparison",
    "AgentComparison": "meta_spider.loom.agentic",
    "BehaviourGoals": "meta_spider.loom.metrics",
    "selective_metrics": "meta_spider.loom.metrics",
    "load_pipeline": "meta_spider.loom.cli_eval",
    "JsonlDataset": "meta_spider.loom.datasets",
    "MMLUDataset": "meta_spider.loom.datasets",
    "RunManifest": "meta_spider.loom.manifest",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS, globals())
