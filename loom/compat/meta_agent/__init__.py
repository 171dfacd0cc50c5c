"""``meta_agent``: the published name of the agent, its session, tools and
backends. Every name is the project's own object (``meta_spider.agentcore``,
``tools``, ``backends``, ``policies``); importing this module imports
nothing heavy."""

from meta_spider.plugins.lazy import publish

publish(globals(), {
    "meta_spider.agentcore.loop": ("MetaAgent",),
    "meta_spider.agentcore.session": ("Session",),
    "meta_spider.agentcore.factory": ("build_agent",),
    "meta_spider.policies.actions": ("Answer", "Refuse", "ToolCall", "REFUSAL_SENTENCE", "is_refusal"),
    "meta_spider.tools": ("Tool", "ToolRegistry", "make_lookup_tool"),
    "meta_spider.backends": ("InferenceBackend", "FakeBackend"),
    "meta_spider.backends.transformers": ("TransformersBackend",),
    "meta_spider.backends.llamacpp": ("LlamaCppBackend",),
    "meta_spider.plugins": ("make_plugin_manager",),
})
