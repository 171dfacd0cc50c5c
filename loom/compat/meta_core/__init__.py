"""``meta_core``: the published name of the pipeline, its configs and the
Doubter. Every name is the project's own object (``meta_spider.wrapper``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import lazy_exports

EXPORTS = {
    "MetaSpiderPipeline": "meta_spider.wrapper.pipeline",
    "GenerationResult": "meta_spider.wrapper.pipeline",
    "MetaSpiderConfig": "meta_spider.wrapper.config",
    "DoubterConfig": "meta_spider.wrapper.config",
    "Doubter": "meta_spider.wrapper.doubter",
    "AnswerGate": "meta_spider.wrapper.gates",
    "AdaptiveGateControl": "meta_spider.wrapper.gates",
    "ReflexionBuffer": "meta_spider.wrapper.buffer",
    "ActivationCollector": "meta_spider.wrapper.collector",
    "BottleneckCrossAttention": "meta_spider.wrapper.cross_attention",
    "WrapperError": "meta_spider.wrapper.errors",
    "NoDoubterError": "meta_spider.wrapper.errors",
    "DoubterNotAttachedError": "meta_spider.wrapper.errors",
    "FingerprintMismatchError": "meta_spider.wrapper.errors",
    "CheckpointError": "meta_spider.wrapper.errors",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS, globals())
