"""``meta_agent``: the published name of the agent, its session, tools and
backends. Every name is the project's own object (``meta_spider.agentcore``,
``tools``, ``backends``, ``policies``); importing this module imports
nothing heavy."""

from meta_spider.plugins.lazy import lazy_exports

EXPORTS = {
    "MetaAgent": "meta_spider.agentcore.loop",
    "Session": "meta_spider.agentcore.session",
    "build_agent": "meta_spider.agentcore.factory",
    "Answer": "meta_spider.policies.actions",
    "Refuse": "meta_spider.policies.actions",
    "ToolCall": "meta_spider.policies.actions",
    "REFUSAL_SENTENCE": "meta_spider.policies.actions",
    "is_refusal": "meta_spider.policies.actions",
    "Tool": "meta_spider.tools",
    "ToolRegistry": "meta_spider.tools",
    "make_lookup_tool": "meta_spider.tools",
    "InferenceBackend": "meta_spider.backends",
    "FakeBackend": "meta_spider.backends",
    "TransformersBackend": "meta_spider.backends.transformers",
    "LlamaCppBackend": "meta_spider.backends.llamacpp",
    "make_plugin_manager": "meta_spider.plugins",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS, globals())
