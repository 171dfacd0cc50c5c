"""The whole world pipeline on the ``tiny`` preset: built once per session
into the world cache (the ``tiny_world`` fixture of conftest), then check that the trained base loads through the
Auto classes and answers well-known facts, can say the refusal sentence
(which a Doubter steers it to), that the cache is reused, the CLI
and the dataset registration work; plus a cheap check that training is
bit-for-bit deterministic."""

from __future__ import annotations

import json

import pytest

from meta_spider.loom.world.presets import ModelSpec, TrainSpec, get_preset


@pytest.mark.world
@pytest.mark.slow
def test_tiny_base_loads_and_knows_frequent_facts(tiny_world) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.world.evaluate import answer_items

    model = AutoModelForCausalLM.from_pretrained(tiny_world.model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"  # the trained Qwen2, saved as Llama
    known = [i for i in tiny_world.qa("train") if i.bucket == "frequent"][:24]
    _, _, texts, correct = answer_items(model, tokenizer, known)
    assert sum(correct) >= len(known) // 2, list(zip(texts, [i.answer for i in known]))
    assert all(t.split()[0] in ("She", "He") for t in texts)


@pytest.mark.world
@pytest.mark.slow
def test_auto_tokenizer_gives_the_ids_the_base_was_trained_on(tiny_world) -> None:
    """What ``AutoTokenizer`` makes of the saved folder must split text as
    the trained tokenizer did: numbers, quotes and JSON included (a Qwen2
    base would be given transformers' own Qwen2 split instead)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    trained = Tokenizer.from_file(str(tiny_world.model_dir / "tokenizer.json"))
    loaded = AutoTokenizer.from_pretrained(tiny_world.model_dir)
    texts = [doc["text"] for doc in tiny_world.world().documents[:300]]
    texts += ['{"name": "lookup", "arguments": {"query": "Ada Kuba"}} born 1968, in 1907.']
    for text in texts:
        assert loaded(text, add_special_tokens=False)["input_ids"] == trained.encode(text, add_special_tokens=False).ids


def test_the_llama_checkpoint_computes_what_the_trained_qwen2_does() -> None:
    import torch

    from meta_spider.loom.world.generator import generate_world
    from meta_spider.loom.world.model import as_llama, build_model, checkpoint_model
    from meta_spider.loom.world.tokenizer import train_tokenizer

    texts = [d["text"] for d in generate_world(get_preset("tiny").world, seed=0).documents[:200]]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    spec = ModelSpec(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                     max_positions=128)
    model = build_model(spec, tokenizer, 0)
    with torch.no_grad():  # away from the init, biases included
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    llama = as_llama(model)
    assert type(llama).__name__ == "LlamaForCausalLM" and llama.config.attention_bias
    ids = torch.tensor([tokenizer(texts[0], add_special_tokens=False)["input_ids"][:48]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, llama(ids).logits)
    assert checkpoint_model(model, ModelSpec(checkpoint_architecture="qwen2", **{
        k: getattr(spec, k) for k in ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                                      "intermediate_size", "max_positions")})) is model
    with pytest.raises(ValueError, match="checkpoint_architecture"):
        ModelSpec(checkpoint_architecture="gpt2")


@pytest.mark.world
@pytest.mark.slow
def test_tiny_base_can_say_the_refusal_sentence(tiny_world) -> None:
    """A Doubter only steers the base; it cannot make it emit tokens the base
    never learnt to produce. After a question about something the world
    never records, even for a held-out person, the base itself gives the
    refusal sentence high probability."""
    import torch

    from meta_spider.loom.world.generator import UNRECORDED_QUESTIONS
    from meta_spider.policies.actions import REFUSAL_SENTENCE

    model, tokenizer = tiny_world.load_model()
    refusal = tokenizer(REFUSAL_SENTENCE, add_special_tokens=False)["input_ids"]
    for item in tiny_world.qa("test")[:12:4]:
        question = UNRECORDED_QUESTIONS[0].format(name=item.entity)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                               add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            log_probs = model(torch.tensor([ids + refusal])).logits[0].float().log_softmax(-1)
        nll = -sum(float(log_probs[len(ids) - 1 + k, token]) for k, token in enumerate(refusal)) / len(refusal)
        assert nll < 0.5, (question, nll)


@pytest.mark.world
@pytest.mark.slow
def test_tiny_manifest_records_data_metrics_and_timings(tiny_world) -> None:
    manifest = json.loads((tiny_world.path / "world.json").read_text())
    assert manifest["key"].startswith("v") and manifest["seed"] == 0
    for name, digest in manifest["data_sha256"].items():
        assert (tiny_world.path / name).exists() and len(digest) == 64
    metrics = manifest["metrics"]
    assert 0.0 < metrics["qa"]["test"]["accuracy"] <= 1.0
    assert set(metrics["qa"]["test"]["by_bucket"]) == {"frequent", "occasional", "rare", "unseen"}
    for position in ("prompt", "draft"):
        assert 0.0 <= metrics["probe"][position]["auroc_test"] <= 1.0
    assert metrics["tool_use"]["parser"] == "native-hermes"
    assert manifest["timings"]["total_s"] > 0
    # which kernels trained the base (another kind of CPU trains another
    # base): the shipped base's, recorded where it was trained
    from meta_spider.loom.world.shipped import ShippedBase

    assert manifest["model_sha256"] == ShippedBase.find(manifest["key"]).manifest["files"]
    assert manifest["kernels"] == ShippedBase.find(manifest["key"]).kernels
    assert manifest["kernels"]["torch_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX"}
    assert not list(tiny_world.path.rglob("*.bin")) and not list(tiny_world.path.rglob("*.pt"))
    assert (tiny_world.model_dir / "model.safetensors").exists()


@pytest.mark.world
@pytest.mark.slow
def test_cache_is_reused_and_cli_reports(tiny_world, tmp_path) -> None:
    from click.testing import CliRunner

    from meta_spider.loom.world.cache import build_world
    from meta_spider.loom.cli.world import world

    stamp = (tiny_world.path / "world.json").stat().st_mtime_ns
    again = build_world("tiny", seed=0, out=tiny_world.path, progress=False)
    assert again.manifest == tiny_world.manifest
    assert (tiny_world.path / "world.json").stat().st_mtime_ns == stamp
    export = tmp_path / "test.jsonl"
    result = CliRunner().invoke(world, ["build", "--preset", "tiny", "--out", str(tiny_world.path),
                                        "--export-jsonl", str(export)])
    assert result.exit_code == 0, result.output
    assert "test QA exact match" in result.output and "probe AUROC" in result.output
    from meta_spider.loom.world.shipped import ShippedBase

    assert ShippedBase.find(tiny_world.manifest["key"]).model_sha256[:8] in result.output
    records = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(records) == len(tiny_world.qa("test")) and records[0]["meta"]["split"] == "test"


@pytest.mark.world
@pytest.mark.slow
def test_world_dataset_registration_and_lookup_tool(tiny_world) -> None:
    from meta_spider.loom.world.dataset import WorldDataset, register_world_dataset

    registered = {}
    register_world_dataset(lambda name, factory: registered.setdefault(name, factory))
    dataset = registered["world"](preset="tiny", seed=0)
    assert isinstance(dataset, WorldDataset) and set(dataset.splits) == {
        "train", "validation", "test", "test_paraphrase", "test_misspelt", "test_outside", "train_lookup",
        "validation_lookup"}
    outside = dataset.split("test_outside")
    assert outside and all(e.meta["answerable"] is False for e in outside)
    assert dataset.check_fn("I don't know.", outside[0]) and not dataset.check_fn("Paris.", outside[0])
    example = dataset.split("test")[0]
    assert example.meta["answerable"] is True
    assert dataset.check_fn(example.answer, example)
    assert dataset.check_fn(example.meta["value"], example)
    assert not dataset.check_fn("He was born in Nowhere.", example)
    kb = tiny_world.knowledge_base()
    assert example.meta["value"] in kb.lookup(example.meta["entity"])


def test_world_dataset_leaves_tool_only_people_out_of_the_questions() -> None:
    from meta_spider.loom.world.dataset import WorldDataset
    from meta_spider.loom.world.generator import generate_world

    spec = get_preset("tiny").world
    world = generate_world(spec, seed=0)
    dataset = WorldDataset("tiny", 0)
    ids = {example.id for example in dataset.split("train")}
    in_population = [item for item in world.qa["train"] if item.person_id < spec.n_people]
    # Every train question of the biography population stays; the tool-only
    # people (ids from n_people on) are asked nothing.
    assert ids == {item.id for item in in_population}
    assert len(world.qa["train"]) - len(ids) == 4 * spec.tool_people
    assert len(dataset.split("test")) == len(world.qa["test"])


def test_training_is_bit_for_bit_deterministic() -> None:
    import torch

    from meta_spider.loom.world.generator import generate_world
    from meta_spider.loom.world.model import build_model
    from meta_spider.loom.world.tokenizer import train_tokenizer
    from meta_spider.loom.world.train import train_model

    world = generate_world(get_preset("tiny").world, seed=2)
    texts = [d["text"] for d in world.documents[:300]]
    tokenizer = train_tokenizer(texts, vocab_size=400)
    docs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    spec = ModelSpec(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                     intermediate_size=64, max_positions=128)
    schedule = TrainSpec(steps=20, batch_size=2, seq_len=32, warmup_steps=2, lr=1e-2)
    runs = []
    for _ in range(2):
        model = build_model(spec, tokenizer, seed=5)
        losses = train_model(model, docs, schedule, seed=5)
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0] and runs[0][0][-1] < runs[0][0][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


@pytest.mark.world
@pytest.mark.slow
def test_calculator_use_counts_calls_and_read_back_results(tiny_world) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.world.cache import cache_key
    from meta_spider.loom.world.evaluate import evaluate_calculator_use
    from meta_spider.loom.world.presets import get_preset
    from meta_spider.loom.world.shipped import ShippedBase

    def calculator_use(folder):
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        return evaluate_calculator_use(model, AutoTokenizer.from_pretrained(folder), n=20)

    # The shipped small base read calculator transcripts: it calls the
    # calculator and states the result it is handed (0.95 and 0.91 of 100).
    small = calculator_use(ShippedBase.find(cache_key(get_preset("small"), 0)).path)
    assert small["n"] == 20 and small["rate"] >= 0.8 and small["answer_rate"] >= 0.8, small
    # tiny's corpus is version 2's: it never read one, and does neither.
    assert calculator_use(tiny_world.model_dir) == {"n": 20, "rate": 0.0, "answer_rate": 0.0}
