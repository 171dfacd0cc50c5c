"""One owner per on-disk format: read from the source with ``ast``, every
place that names one of a format's files (or its keys) and decodes or
encodes JSON, safetensors or GGUF sits in that format's owner module (a
writer module may encode, never decode). A stray ``json.loads`` of run.json
anywhere else fails here. The owners also load without torch."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from torchless import run_without_torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("agentcore", "backends", "benchmarks", "loom", "native", "plugins", "policies", "tools", "wrapper")

READ_CALLS = {"json.load", "json.loads", "safe_open", "load_file", "GGUFReader", "gguf.GGUFReader"}
WRITE_CALLS = {"json.dump", "json.dumps", "save_file"}


@dataclass(frozen=True)
class Format:
    owner: str
    """The one module that decodes (and encodes) the format."""
    names: frozenset[str]
    """Constants naming its files or keys."""
    strings: frozenset[str]
    """Its file names and keys as literals."""
    writers: frozenset[str] = frozenset()
    """Modules that may encode it too (never decode)."""


def _format(owner: str, names: set[str], strings: set[str], writers: set[str] = frozenset()) -> Format:
    return Format(owner, frozenset(names), frozenset(strings), frozenset(writers))


FORMATS = {
    "run.json": _format("agentcore/runfile.py", {"RUN_FILE", "MANIFEST_FILE", "EXTERNAL_PATHS_FIELD"}, {"run.json"}),
    "Doubter checkpoint": _format(
        "wrapper/checkpoint.py", {"CHECKPOINT_CONFIG_FILE", "CHECKPOINT_WEIGHTS_FILE", "METADATA_CONFIG_KEY"},
        {"doubter_config.json", "doubter.safetensors"}),
    "sidecar": _format(
        "backends/llamacpp/sidecar_format.py",
        {"KEY_CONFIG", "KEY_FINGERPRINT", "KEY_CALIBRATION", "KEY_SCALARS", "KEY_FORMAT_VERSION", "KEY_BASE_VOCAB_SIZE",
         "SIDECAR_ARCHITECTURE"},
        {"meta-spider.doubter_config", "meta-spider.fingerprint", "meta-spider.calibration",
         "meta-spider.scalar_tensors", "meta-spider.format_version", "meta-spider.base_vocab_size"},
        writers={"loom/gguf/sidecar.py"}),
    "session": _format("agentcore/session.py", {"SESSION_FORMAT", "SESSION_VERSION"}, {"meta-spider-session"}),
    "activation dataset": _format(
        "loom/collect/activations.py", {"COLLECTION_FILE", "EXAMPLES_FILE", "SHARD_PREFIX", "SHARD_SUFFIX"},
        {"collection.json", "examples.jsonl"}),
    "world folder": _format("loom/world/cache.py", {"MANIFEST"}, {"world.json"}),
    "shipped base": _format("loom/world/shipped.py", {"SHIPPED_MANIFEST"}, {"base.json"}),
}


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _scopes(tree: ast.Module) -> dict[ast.AST, list[ast.AST]]:
    """Every node under its innermost function (or the module)."""
    scopes: dict[ast.AST, list[ast.AST]] = {}

    def walk(node: ast.AST, scope: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            scopes.setdefault(inner, []).append(child)
            walk(child, inner)

    walk(tree, tree)
    return scopes


def stray_codecs(source: str, module: str) -> list[str]:
    """``format: module:line`` for each function of ``module`` (a path
    relative to the repository) that names a format it does not own and
    decodes there (or encodes, unless it is one of the format's writers)."""
    found = []
    for scope, nodes in _scopes(ast.parse(source)).items():
        mentioned = {node.id for node in nodes if isinstance(node, ast.Name)}
        mentioned |= {node.attr for node in nodes if isinstance(node, ast.Attribute)}
        literals = {node.value for node in nodes if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        calls = {_call_name(node) for node in nodes if isinstance(node, ast.Call)}
        for name, spec in FORMATS.items():
            if module == spec.owner or not (mentioned & spec.names or literals & spec.strings):
                continue
            forbidden = READ_CALLS if module in spec.writers else READ_CALLS | WRITE_CALLS
            if calls & forbidden:
                found.append(f"{name}: {module}:{getattr(scope, 'lineno', 1)} ({', '.join(sorted(calls & forbidden))})")
    return found


def source_modules() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (REPO_ROOT / folder).rglob("*.py")
                  if "__pycache__" not in path.parts)


def test_each_format_is_decoded_and_encoded_only_by_its_owner() -> None:
    strays = [stray for path in source_modules()
              for stray in stray_codecs(path.read_text(encoding="utf-8"), path.relative_to(REPO_ROOT).as_posix())]
    assert strays == []


def test_every_owner_exists_and_codes_its_format() -> None:
    for name, spec in FORMATS.items():
        tree = ast.parse((REPO_ROOT / spec.owner).read_text(encoding="utf-8"))
        calls = {_call_name(node) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert calls & READ_CALLS, f"{spec.owner} decodes nothing, yet owns the {name} format"


@pytest.mark.parametrize("stray", [
    'def read(run_dir):\n    return json.loads((run_dir / "run.json").read_text())\n',
    'def settings(run_dir):\n    with open(run_dir / RUN_FILE) as stream:\n        return json.load(stream)\n',
    'def info(folder):\n    return json.loads((folder / COLLECTION_FILE).read_text())["complete"]\n',
    'def weights(folder):\n    return load_file(str(folder / CHECKPOINT_WEIGHTS_FILE))\n',
    'def config(reader):\n    return json.loads(reader.fields[KEY_CONFIG].contents())\n',
    'def commit(folder, info):\n    (folder / "collection.json").write_text(json.dumps(info))\n',
])
def test_a_stray_reader_or_writer_elsewhere_is_caught(stray: str) -> None:
    assert len(stray_codecs(stray, "loom/evaluate/agentic.py")) == 1
    assert stray_codecs("def unrelated(text):\n    return json.loads(text)\n", "loom/evaluate/agentic.py") == []


def test_the_sidecar_writer_may_encode_but_not_decode() -> None:
    encode = "def write(writer, config):\n    writer.add_string(KEY_CONFIG, json.dumps(config))\n"
    decode = "def peek(fields):\n    return json.loads(fields[KEY_CONFIG])\n"
    assert stray_codecs(encode, "loom/gguf/sidecar.py") == []
    assert len(stray_codecs(decode, "loom/gguf/sidecar.py")) == 1
    assert len(stray_codecs(encode, "loom/gguf/deploy.py")) == 1


def test_the_owners_read_their_files_without_torch(tmp_path: Path) -> None:
    from meta_spider.agentcore.session import Session
    from meta_spider.wrapper import Doubter, DoubterConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"backends": {"fake": {}}, "external_paths": ["/elsewhere"]}))
    config = DoubterConfig(hidden_size=16, num_layers=2, target_layers=[1], encoder_dim=8, ca_bottleneck_dim=8,
                           ca_num_heads=2, num_cognitive_tokens=2)
    Doubter(config, model_id="tiny").save_checkpoint(tmp_path / "checkpoint")
    Doubter(config, model_id="tiny").save_checkpoint(tmp_path / "single.safetensors")
    session = Session()
    session.add_user("hello")
    session.save(tmp_path / "session.json")
    seen = run_without_torch("""
        from meta_spider.agentcore.runfile import read_run_file
        from meta_spider.agentcore.session import Session
        from meta_spider.wrapper.checkpoint import read_checkpoint_document
        import meta_spider.backends.llamacpp.sidecar_format, meta_spider.loom.collect.activations, meta_spider.loom.manifest

        folder = sys.argv[1]
        run_file = read_run_file(folder + "/run")
        documents = [read_checkpoint_document(folder + name)[0] for name in ("/checkpoint", "/single.safetensors")]
        session = Session.load(folder + "/session.json")
        print(json.dumps({"external": run_file.external_paths, "models": [d["fingerprint"]["model_id"] for d in documents],
                          "messages": len(session.messages), "torch": "torch" in sys.modules}))
    """, tmp_path, str(tmp_path))
    assert seen == {"external": ["/elsewhere"], "models": ["tiny", "tiny"], "messages": 1, "torch": False}
