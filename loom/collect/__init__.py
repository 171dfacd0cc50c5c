"""Collection: pass 1 over a dataset, judged, into an activation dataset.

``collector`` (:class:`ActivationDatasetCollector`, batched and resumable),
``activations`` (the activation dataset's on-disk format: safetensors shards
plus JSON), ``judge`` (correctness from an LLM judge) and ``ranks`` (the
sharded multi-process collection).
"""
