"""``meta_core``: the published name of the pipeline, its configs and the
Doubter. Every name is the project's own object (``meta_spider.wrapper``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import publish

publish(globals(), {
    "meta_spider.wrapper.pipeline": ("MetaSpiderPipeline", "GenerationResult"),
    "meta_spider.wrapper.config": ("MetaSpiderConfig", "DoubterConfig"),
    "meta_spider.wrapper.doubter": ("Doubter",),
    "meta_spider.wrapper.gates": ("AnswerGate", "AdaptiveGateControl"),
    "meta_spider.wrapper.buffer": ("ReflexionBuffer",),
    "meta_spider.wrapper.collector": ("ActivationCollector",),
    "meta_spider.wrapper.cross_attention": ("BottleneckCrossAttention",),
    "meta_spider.wrapper.errors": (
        "WrapperError", "NoDoubterError", "DoubterNotAttachedError", "FingerprintMismatchError", "CheckpointError",
    ),
})
