"""``meta_loom``: the published name of collection, training, comparisons
and benchmarks. Every name is the project's own object (``meta_spider.loom``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import publish

publish(globals(), {
    "meta_spider.loom.collect.collector": ("ActivationDatasetCollector",),
    "meta_spider.loom.collect.activations": ("ActivationDataset",),
    "meta_spider.loom.train.trainer": ("Trainer", "TrainingResult"),
    "meta_spider.loom.train.config": ("TrainerConfig",),
    "meta_spider.loom.evaluate.evaluation": ("QABenchmark", "classify_action", "EvalHarness", "HarnessTask"),
    "meta_spider.loom.evaluate.benchmark_tasks": ("BenchmarkTask",),
    "meta_spider.loom.evaluate.comparison": ("BaselineComparison", "ComparisonReport"),
    "meta_spider.loom.evaluate.agentic": ("AgentComparison",),
    "meta_spider.loom.evaluate.metrics": ("BehaviourGoals", "selective_metrics"),
    "meta_spider.loom.cli.eval": ("load_pipeline",),
    "meta_spider.loom.datasets": ("JsonlDataset", "MMLUDataset"),
    "meta_spider.loom.manifest": ("RunManifest",),
})
