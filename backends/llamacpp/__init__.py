"""The llama.cpp backend: stock llama-cpp-python with the Doubter's two
passes run through the eval callback.

``backend`` (:class:`LlamaCppBackend`), ``hooks`` (a context whose layer
outputs can be read and overwritten), ``eval_hook`` and ``eval_filter`` (the
callback and its compiled node filter), ``ggml_ctypes`` (the tensor views),
``numpy_doubter`` (the Doubter's math in numpy, from the GGUF sidecar) and
``errors``. Importing this package loads none of them; llama_cpp itself
loads when a backend is built.
"""

from __future__ import annotations

from meta_spider.plugins.lazy import publish

publish(globals(), {"meta_spider.backends.llamacpp.backend": ("LlamaCppBackend",)})
