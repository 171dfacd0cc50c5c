"""A meta-spider plugin that raises on import, for the broken-plugin tests.

This folder deliberately has no pyproject.toml, so scripts/test.sh does not
install it (an installed broken plugin would break every plugin manager in
the suite). tests/test_plugins_broken.py exposes it instead through a
temporary ``*.dist-info`` with an entry point in group ``meta_spider`` on
``sys.path`` (or PYTHONPATH for the console-script test).
"""

raise RuntimeError("meta_spider_broken_plugin is broken on purpose")
