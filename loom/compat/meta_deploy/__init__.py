"""``meta_deploy``: the published name of the llama.cpp export. Every name is
the project's own object (``meta_spider.loom.gguf``: ``deploy``, ``sidecar``, ``writer``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import publish

publish(globals(), {
    "meta_spider.loom.gguf.deploy": ("export_from_run_dir",),
    "meta_spider.loom.gguf.sidecar": ("export_sidecar",),
    "meta_spider.loom.gguf.writer": ("export_base_gguf",),
    "meta_spider.backends.llamacpp": ("LlamaCppBackend",),
})
