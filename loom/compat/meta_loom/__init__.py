"""``meta_loom``: the published name of collection, training, comparisons
and benchmarks. Every name is the project's own object (``meta_spider.loom``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import lazy_exports

EXPORTS = {
    "ActivationDatasetCollector": "meta_spider.loom.collect.collector",
    "ActivationDataset": "meta_spider.loom.collect.activations",
    "Trainer": "meta_spider.loom.train.trainer",
    "TrainingResult": "meta_spider.loom.train.trainer",
    "TrainerConfig": "meta_spider.loom.train.config",
    "QABenchmark": "meta_spider.loom.evaluate.evaluation",
    "BenchmarkTask": "meta_spider.loom.evaluate.benchmark_tasks",
    "classify_action": "meta_spider.loom.evaluate.evaluation",
    "EvalHarness": "meta_spider.loom.evaluate.evaluation",
    "HarnessTask": "meta_spider.loom.evaluate.evaluation",
    "BaselineComparison": "meta_spider.loom.evaluate.comparison",
    "ComparisonReport": "meta_spider.loom.evaluate.comparison",
    "AgentComparison": "meta_spider.loom.evaluate.agentic",
    "BehaviourGoals": "meta_spider.loom.evaluate.metrics",
    "selective_metrics": "meta_spider.loom.evaluate.metrics",
    "load_pipeline": "meta_spider.loom.cli.eval",
    "JsonlDataset": "meta_spider.loom.datasets",
    "MMLUDataset": "meta_spider.loom.datasets",
    "RunManifest": "meta_spider.loom.manifest",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS, globals())
