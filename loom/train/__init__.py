"""Training: the Doubter fitted on an activation dataset, the base frozen.

``trainer`` (:class:`Trainer`, the loop), ``config`` (``TrainConfig``),
``data`` (batches from the shards), ``targets`` (what the Doubter learns),
``groups`` (parameter groups), ``probes`` (the linear probes and the signal
mix fitted before the loop) and ``state`` (resumable training state).
"""
