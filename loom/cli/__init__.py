"""The ``metaloom`` and ``metadeploy`` commands, one module per command
group: ``collect``, ``train``, ``eval``, ``deploy`` and ``world``. The host
CLI finds them through the loom plugin (``meta_spider.loom.plugin``).
"""
