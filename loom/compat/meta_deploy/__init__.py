"""``meta_deploy``: the published name of the llama.cpp export. Every name is
the project's own object (``meta_spider.loom.gguf.deploy``, ``loom.gguf``);
importing this module imports nothing heavy."""

from meta_spider.plugins.lazy import lazy_exports

EXPORTS = {
    "export_from_run_dir": "meta_spider.loom.gguf.deploy",
    "export_sidecar": "meta_spider.loom.gguf.sidecar",
    "export_base_gguf": "meta_spider.loom.gguf.writer",
    "LlamaCppBackend": "meta_spider.backends.llamacpp",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS, globals())
