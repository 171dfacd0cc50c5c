"""What ``meta-agent`` reads from a run directory's ``run.json``.

The file is read by :mod:`meta_spider.agentcore.runfile`; this module is its
agent level: every field optional, only the fields the agent uses checked
(the loom's ``RunManifest`` is the stricter level of the same file). Fields
read (everything else in the file is ignored):

``backends``
    An object mapping a backend name (as registered through
    ``register_backends``: ``"transformers"``, ``"llamacpp"``, ...) to the
    keyword settings of its factory. The first name listed is the default
    when ``--backend`` is not given (``transformers`` when the file lists
    none but names a model; ``fake`` when it names neither).
``model``, ``layers``, ``read_position``, ``inject_positions``, ``checkpoint``
    The run's pipeline: they give the ``transformers`` backend its default
    settings (``model_name``, ``revision``, ``dtype``, ``quantization``,
    ``device``, ``target_layers``, ``cross_attn_layers``, ``read_position``,
    ``inject_positions``, ``checkpoint``; the same keys as
    ``RunManifest.pipeline_settings()`` plus the checkpoint), which
    ``backends.transformers`` may override key by key.
``prompt.system_prompt``
    The system prompt the run's questions were asked with (the agent asks
    with the same one).
``policy`` (an agent extension; the manifest keeps unknown fields)
    The default policy: a name (``"doubter"``), or an object
    ``{"name": ..., "settings": {...}}`` whose settings are passed to the
    policy's factory whenever that policy is chosen.
``renderer`` (agent extension, optional)
    The same shape as ``policy``, for the action renderer (its calibrated
    threshold, for instance); defaults to ``"default"``.
``calibration``
    Scorer name -> ``{"threshold": number or null, ...}`` as ``metaloom
    eval`` writes it; handed whole to every policy factory that names
    ``calibration`` in its ``host_keywords`` (``doubter``, ``probe``; see
    ``register_policies``), which picks its entry.
``knowledge_base`` (agent extension, optional)
    ``{"facts_path": FILE}``: the facts behind the ``lookup`` tool, a JSON
    object of query -> fact, or JSONL lines ``{"query": ..., "fact": ...}``.

Setting values under the key ``checkpoint`` or a key ending in ``_path``
must be strings; relative ones are resolved against the run directory, as
the manifest records them, so a run directory can be moved as a whole. A
path that leads outside the run directory (absolute, or through ``..``) is
used, with a warning, unless the project's own commands recorded it in
``external_paths`` when they wrote the file
(:func:`~meta_spider.agentcore.runfile.resolve_run_path`).

This module knows nothing about models, checkpoints or what the settings
mean: it hands them to the factories the plugins registered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

from meta_spider.agentcore.runfile import RunFile, RunFileError, is_path_setting, read_run_file, resolve_run_path
from meta_spider.tools import DictKnowledgeBase

__all__ = ["ComponentChoice", "RunFileError", "RunSettings", "read_facts", "read_run_settings", "run_settings"]

@dataclass(frozen=True)
class ComponentChoice:
    """A component name and the settings its factory is called with."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a component name must be a non-empty string, got {self.name!r}")


@dataclass(frozen=True)
class RunSettings:
    """The agent's view of a run: backend settings by name, policy, renderer."""

    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Factory settings per backend name, in the order run.json lists them."""
    policy: ComponentChoice | None = None
    renderer: ComponentChoice | None = None
    system_prompt: str | None = None
    run_dir: Path | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    """run.json's ``calibration`` (scorer name -> threshold entry)."""
    knowledge_base: dict[str, Any] = field(default_factory=dict)
    """run.json's ``knowledge_base`` settings, paths resolved."""
    dataset: dict[str, Any] = field(default_factory=dict)
    """run.json's ``dataset`` (``name``, ``options``): where the agent's
    ``lookup`` finds facts when no ``knowledge_base`` file is named."""

    @property
    def default_backend(self) -> str | None:
        """The first backend run.json lists, or None."""
        return next(iter(self.backends), None)

    def backend_settings(self, name: str) -> dict[str, Any]:
        """Settings for backend ``name`` (empty when run.json has none)."""
        return dict(self.backends.get(name, {}))

    def make_knowledge_base(self) -> DictKnowledgeBase | None:
        """The knowledge base ``knowledge_base.facts_path`` names, or None."""
        path = self.knowledge_base.get("facts_path")
        if not path:
            return None
        return DictKnowledgeBase(read_facts(path), name=Path(path).stem)

    def policy_settings(self, name: str) -> dict[str, Any]:
        """Settings for policy ``name``: run.json's only when it names this policy."""
        if self.policy is not None and self.policy.name == name:
            return dict(self.policy.settings)
        return {}


def _resolve_paths(settings: dict[str, Any], run_dir: Path, *, prefix: str, source: str,
                   trusted: Collection[str]) -> dict[str, Any]:
    resolved = dict(settings)
    for key, value in settings.items():
        if not is_path_setting(str(key)) or value is None or value == "":
            continue
        if not isinstance(value, str):
            raise RunFileError(source, f"{prefix}{key}", f"expected a path string, got {value!r:.80}",
                               "Write the path as a string, relative to the run directory.")
        resolved[key] = str(resolve_run_path(run_dir, value, field_name=f"{prefix}{key}", source=source,
                                             trusted=trusted))
    return resolved


def _choice(value: Any, field_name: str, path: Path) -> ComponentChoice | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return ComponentChoice(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and value["name"]:
        settings = value.get("settings", {})
        if not isinstance(settings, Mapping):
            raise RunFileError(path, f"{field_name}.settings", f"expected an object, got {settings!r:.80}",
                               "Write the factory's keyword settings as a JSON object.")
        return ComponentChoice(value["name"], dict(settings))
    raise RunFileError(path, field_name, f"expected a name or {{\"name\": ..., \"settings\": {{...}}}}, "
                       f"got {value!r:.80}", f'Write e.g. "{field_name}": "direct".')


def _pipeline_settings(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The ``transformers`` backend's settings implied by the run's pipeline
    fields (empty when run.json names no model)."""
    model = data.get("model")
    if not isinstance(model, Mapping) or not isinstance(model.get("name"), str) or not model["name"]:
        return {}
    layers = data.get("layers", {})
    if not isinstance(layers, Mapping):
        raise RunFileError(path, "layers", f"expected an object, got {layers!r:.80}",
                           "Regenerate the file with `metaloom collect`.")
    settings: dict[str, Any] = {"model_name": model["name"]}
    for key in ("revision", "dtype", "quantization", "device"):
        if key in model:
            settings[key] = model[key]
    for key in ("target_layers", "cross_attn_layers"):
        if key in layers:
            settings[key] = layers[key]
    for key in ("read_position", "inject_positions", "checkpoint"):
        if data.get(key) is not None:
            settings[key] = data[key]
    return settings


def read_facts(path: str | os.PathLike[str]) -> dict[str, str]:
    """Query -> fact from a JSON object file or JSONL ``{"query", "fact"}``
    lines; raises :class:`RunFileError` naming the file and the problem."""
    target = Path(path)
    fix = 'Write a JSON object {"query": "fact", ...} or JSONL lines {"query": ..., "fact": ...}.'
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunFileError(str(target), None, f"cannot read the knowledge-base facts ({exc.strerror})", fix) from exc
    except UnicodeDecodeError as exc:
        raise RunFileError(str(target), None, f"the facts are not UTF-8 text (byte {exc.start})", fix) from None
    try:
        data = json.loads(text)
        records = None
    except RecursionError:
        raise RunFileError(str(target), None, "the JSON nests too deeply", fix) from None
    except json.JSONDecodeError:
        data = None
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise RunFileError(str(target), None, f"neither a JSON object nor JSONL ({exc})", fix) from exc
        except RecursionError:
            raise RunFileError(str(target), None, "a JSONL line nests too deeply", fix) from None
    if isinstance(data, dict) and set(data) == {"query", "fact"}:  # one JSONL line is a JSON document too
        records = [data]
    elif isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return dict(data)
    if records is not None and all(
        isinstance(r, dict) and isinstance(r.get("query"), str) and isinstance(r.get("fact"), str) for r in records
    ):
        return {record["query"]: record["fact"] for record in records}
    raise RunFileError(str(target), None, "expected query -> fact strings", fix)


def _check_calibration_entry(path: Path, calibration: Mapping[str, Any], scorer: str) -> None:
    """A calibration entry the policies can gate on (a threshold, and the
    gate after a lookup when it carries one), or a :class:`RunFileError`
    naming the field: found when run.json is read, not once a model has loaded."""
    from meta_spider.policies.doubter import resolve_threshold
    from meta_spider.wrapper.after_lookup import ENTRY_KEY, AfterLookupGate

    entry = calibration[scorer]
    try:
        resolve_threshold(None, calibration, scorer)
        if isinstance(entry, Mapping) and entry.get(ENTRY_KEY) is not None:
            AfterLookupGate.from_entry(entry[ENTRY_KEY])
    except ValueError as error:
        raise RunFileError(path, f"calibration.{scorer}", str(error),
                           "Regenerate it with `metaloom eval --run-dir D`.") from error


def read_run_settings(run_dir: str | os.PathLike[str]) -> RunSettings:
    """Read the agent's fields from ``<run_dir>/run.json``.

    Raises :class:`RunFileError` naming the file, the field and the fix.
    """
    return run_settings(read_run_file(run_dir))


def run_settings(run_file: RunFile) -> RunSettings:
    """The agent's view of a run.json already read (the agent level of
    :mod:`~meta_spider.agentcore.runfile`): only the fields it uses are checked."""
    directory = run_file.path.parent.resolve()
    data, path, trusted = run_file.data, run_file.path, run_file.external_paths

    def resolve(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        return _resolve_paths(dict(settings), directory, prefix=prefix, source=str(path), trusted=trusted)

    backends_field = data.get("backends", {})
    if not isinstance(backends_field, Mapping):
        raise RunFileError(path, "backends", f"expected an object of backend name -> settings, "
                           f"got {backends_field!r:.80}", 'Write e.g. "backends": {"transformers": {...}}.')
    backends: dict[str, dict[str, Any]] = {}
    pipeline = _pipeline_settings(data, path)
    for name, settings in backends_field.items():
        if not isinstance(settings, Mapping):
            raise RunFileError(path, f"backends.{name}", f"expected an object of settings, got {settings!r:.80}",
                               "Write the backend factory's keyword settings as a JSON object.")
        merged = {**pipeline, **settings} if name == "transformers" else dict(settings)
        backends[name] = resolve(merged, f"backends.{name}.")
    if pipeline and "transformers" not in backends:  # listed last: an explicit backend stays the default
        backends["transformers"] = resolve(pipeline, "")
    policy = _choice(data.get("policy"), "policy", path)
    if policy is not None:
        policy = ComponentChoice(policy.name, resolve(policy.settings, "policy.settings."))
    prompt = data.get("prompt", {})
    system_prompt = prompt.get("system_prompt") if isinstance(prompt, Mapping) else None
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise RunFileError(path, "prompt.system_prompt", f"expected a string or null, got {system_prompt!r:.80}",
                           "Write the system prompt as a string.")
    calibration = data.get("calibration", {})
    if not isinstance(calibration, Mapping):
        raise RunFileError(path, "calibration", f"expected an object of scorer -> {{\"threshold\": ...}}, "
                           f"got {calibration!r:.80}", "Regenerate it with `metaloom eval --run-dir D`.")
    for scorer in calibration:
        _check_calibration_entry(path, calibration, str(scorer))
    knowledge_base = data.get("knowledge_base") or {}
    if not isinstance(knowledge_base, Mapping):
        raise RunFileError(path, "knowledge_base", f"expected an object, got {knowledge_base!r:.80}",
                           'Write e.g. "knowledge_base": {"facts_path": "facts.json"}.')
    dataset = data.get("dataset") or {}
    if not isinstance(dataset, Mapping) or not isinstance(dataset.get("options", {}), Mapping):
        raise RunFileError(path, "dataset", f"expected an object with 'name' and 'options', got {dataset!r:.80}",
                           "Regenerate it with `metaloom collect`.")
    return RunSettings(backends, policy, _choice(data.get("renderer"), "renderer", path),
                       system_prompt or None, directory, dict(calibration),
                       resolve(knowledge_base, "knowledge_base."),
                       {"name": dataset.get("name"), "options": dict(dataset.get("options", {}))})
