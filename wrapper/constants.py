"""Names shared by the wrapper's files: checkpoint file names, metadata
keys and the checkpoint format version.

Only names live here; nothing in this module knows how the files are
written (see :mod:`meta_spider.wrapper.checkpoint`).
"""

from __future__ import annotations

CHECKPOINT_CONFIG_FILE = "doubter_config.json"
"""JSON beside the weights: the DoubterConfig plus the base fingerprint."""

CHECKPOINT_WEIGHTS_FILE = "doubter.safetensors"
"""The wrapper's tensors only (never a base weight)."""

METADATA_CONFIG_KEY = "doubter_config"
"""Key of the JSON config inside a single-file ``.safetensors`` checkpoint's
metadata (and inside the folder checkpoint's metadata, for tools)."""

METADATA_FORMAT_KEY = "format"
METADATA_FORMAT_VALUE = "meta-spider-doubter"

CHECKPOINT_FORMAT_VERSION = 1
"""Bump when the layout changes; :mod:`checkpoint` upgrades older versions
explicitly, one log line per change."""

FRAMEWORK_NAME = "meta-spider"

ENCODER_TYPES = ("selective", "multi_token", "transformer")
INJECT_POSITIONS = ("generation", "all")
READ_POSITIONS = ("prompt", "draft")
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = (None, "int8", "nf4", "fp4")
LAYER_PRESETS = ("all", "late")

SCOPE_VETO_LOGIT = -30.0
"""The P(correct) logit of a question the scope gate vetoes (P about 1e-13);
:mod:`meta_spider.wrapper.scope` and the numpy Doubter both use it."""
