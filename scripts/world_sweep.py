"""Preset sweep of the embedded world: build a variant of ``small`` (or of
``tiny``, names starting ``t_``), train its base (on a GPU when given one,
else the CPU), evaluate it on the CPU and write one JSON record with QA
accuracy by bucket, probe AUROCs, the mean answer log-prob baseline, native
tool use, the calculator's call and read-back rates, answer-from-lookup
accuracy, the accuracy on the shifted test splits, and the accuracy of the
*validation* people asked in held-out frames
(``validation_paraphrase``: a choice between variants made on it leaves the
test people unseen).

    python scripts/world_sweep.py VARIANT[@SEED] OUTDIR [cuda|cpu]

This is the trial log's tool (docs/world.md): variants trained on a GPU give
a model of the same kind as a CPU build, not the same bits, so use it to
choose settings and measure the chosen preset with ``metaloom world build``.
Variants ``g`` and ``fs`` swap the knowledge base's fact line for the trial;
``digits`` trains the tokenizer with Qwen2's split (one digit per token),
``gpt2digits`` with GPT-2's after the digits are split off.
The trained base is saved beside the record (``VARIANT@SEED-model``, the
form a build saves), so a Doubter run can collect on it
(``metaloom collect --model-name``).
"""
import dataclasses, json, sys, time
from pathlib import Path

import numpy as np
import torch

from meta_spider.loom.world.evaluate import evaluate_world, answer_items
from meta_spider.loom.world.generator import SHIFT_SPLITS, ask, generate_world
from meta_spider.loom.world.model import build_model, checkpoint_model
from meta_spider.loom.world.presets import get_preset
from meta_spider.loom.world.probe import auroc_or_nan as auroc
from meta_spider.loom.world.tokenizer import train_tokenizer
from meta_spider.loom.world.train import train_model

VARIANTS = {
    "smoke": {"train": {"steps": 20, "warmup_steps": 5}},
    "base": {},
    "steps2400": {"train": {"steps": 2400}},
    "steps3000": {"train": {"steps": 3000}},
    "tt2": {"world": {"tool_transcripts_per_person": 2}},
    "tp3000": {"world": {"tool_people": 3000}},
    "v4096": {"model": {"vocab_size": 4096}},
    "l5": {"model": {"num_layers": 5}},
    "h192": {"model": {"hidden_size": 192, "num_heads": 6, "num_kv_heads": 2, "intermediate_size": 512}},
    "lr5": {"train": {"lr": 5e-3}},
    "combo1": {"train": {"steps": 2400}, "world": {"tool_transcripts_per_person": 2, "tool_people": 2500}},
    "combo2": {"train": {"steps": 2400}, "model": {"vocab_size": 4096}, "world": {"tool_transcripts_per_person": 2}},
    "combo3": {"train": {"steps": 2400}, "model": {"num_layers": 5}},
    "mention2": {"world": {"bucket_mentions": (16, 4, 2, 0)}},
    "ep234": {"world": {"episodes_per_conversation": (2, 3, 4)}},
    "v4096_tp3000": {"model": {"vocab_size": 4096}, "world": {"tool_people": 3000}},
    "v4096_tp4000": {"model": {"vocab_size": 4096}, "world": {"tool_people": 4000}},
    "v4096_tp5000": {"model": {"vocab_size": 4096}, "world": {"tool_people": 5000}},
    "v4096_tp3000_s2400": {"model": {"vocab_size": 4096}, "world": {"tool_people": 3000}, "train": {"steps": 2400}},
    "v3072_tp3000": {"model": {"vocab_size": 3072}, "world": {"tool_people": 3000}},
    "v3072_tp4000": {"model": {"vocab_size": 3072}, "world": {"tool_people": 4000}},
    "tp3000_s2400": {"world": {"tool_people": 3000}, "train": {"steps": 2400}},
    "tp4000": {"world": {"tool_people": 4000}},
    "v4096_tp3000_tt2": {"model": {"vocab_size": 4096}, "world": {"tool_people": 3000, "tool_transcripts_per_person": 2}},
    "v4096_tp3000_l5": {"model": {"vocab_size": 4096, "num_layers": 5}, "world": {"tool_people": 3000}},
    "v4096_tp3000_lr4": {"model": {"vocab_size": 4096}, "world": {"tool_people": 3000}, "train": {"lr": 4e-3}},
    "cur": {},
    "qa4": {"world": {"qa_repeats": 4}},
    "calc900": {"world": {"calculator_transcripts": 900}},
    "h192t2": {"model": {"hidden_size": 192, "num_heads": 6, "num_kv_heads": 2, "intermediate_size": 512},
               "train": {"threads": 2}},
    "digits": {"tokenizer": "qwen2"},
    "gpt2digits": {"tokenizer": "gpt2-digits"},
    "gpt2digits_s3600": {"tokenizer": "gpt2-digits", "train": {"steps": 3600}},
    "g": {"fact": "g"},
    "fs": {"fact": "fs"},
    "fs_tt2": {"fact": "fs", "world": {"tool_transcripts_per_person": 2}},
    "t_base": {},
    "t_tp1500": {"world": {"tool_people": 1500}},
    "t_tp3000": {"world": {"tool_people": 3000}},
    "t_tp2000_s1000": {"world": {"tool_people": 2000}, "train": {"steps": 1000}},
    "t_tp3000_s1000": {"world": {"tool_people": 3000}, "train": {"steps": 1000}},
    "t_l4_tp2000": {"world": {"tool_people": 2000}, "model": {"num_layers": 4}},
    "t_l4_tp2000_s900": {"world": {"tool_people": 2000}, "model": {"num_layers": 4}, "train": {"steps": 900}},
    "t_tp2000_s1000_lr3": {"world": {"tool_people": 2000}, "train": {"steps": 1000, "lr": 3e-3}},
    "t_v2048_tp2000_s1000": {"world": {"tool_people": 2000}, "model": {"vocab_size": 2048}, "train": {"steps": 1000}},
    "t_seq256_tp2000": {"world": {"tool_people": 2000}, "train": {"seq_len": 256}},
    "t_tp2000_s1000_b24": {"world": {"tool_people": 2000}, "train": {"steps": 1000, "batch_size": 24}},
}


def variant_preset(name):
    preset = get_preset("tiny" if name.startswith("t_") else "small")
    over = VARIANTS[name]
    return dataclasses.replace(
        preset, name=f"small-{name}",
        world=dataclasses.replace(preset.world, **over.get("world", {})),
        model=dataclasses.replace(preset.model, **over.get("model", {})),
        train=dataclasses.replace(preset.train, **over.get("train", {})),
    )


def logprob_baselines(model, tokenizer, items):
    drafts, prompt_ids, texts, correct = answer_items(model, tokenizer, items)
    mean_lp, first_p = [], []
    with torch.inference_mode():
        for p, d in zip(prompt_ids, drafts):
            if not d:
                mean_lp.append(-99.0); first_p.append(0.0); continue
            ids = torch.tensor([p + d])
            logp = model(input_ids=ids).logits[0].log_softmax(-1)
            rows = logp[len(p) - 1: len(p) - 1 + len(d)]
            tok = rows.gather(1, torch.tensor(d)[:, None])[:, 0]
            mean_lp.append(float(tok.mean()))
            first_p.append(float(rows[0].exp().max()))
    y = np.asarray(correct, dtype=np.int64)
    return {"auroc_mean_logprob": auroc(np.array(mean_lp), y), "auroc_first_maxprob": auroc(np.array(first_p), y)}


def patch_fact(kind):
    from meta_spider.loom.world import generator
    if kind == "g":
        def fact_line(person):
            return (f"{person.name} ({person.subject.lower()}): born {person.birth_year} in {person.birth_city}, "
                    f"{person.birth_country}; {person.profession}; works for {person.employer}.")
    elif kind == "fs":
        def fact_line(person):
            return person.name + ": " + " ".join(generator.answer_sentence(person, a) for a in generator.ATTRIBUTES)
    else:
        return
    generator.fact_line = fact_line


def obs_accuracy(model, tokenizer, world, items):
    from meta_spider.loom.world import generator
    from meta_spider.loom.world.chat import LOOKUP_TOOL, render_chat, lookup_call
    from meta_spider.loom.world.evaluate import greedy_generate
    from meta_spider.loom.world.scorer import check_answer
    people = {p.id: p for p in world.people}
    prompts = []
    for it in items:
        p = people[it.person_id]
        msgs = [{"role": "user", "content": it.question},
                {"role": "assistant", "content": "", "tool_calls": [lookup_call(p.name)]},
                {"role": "tool", "name": "lookup", "content": generator.fact_line(p)}]
        prompts.append(render_chat(msgs, tools=[LOOKUP_TOOL], add_generation_prompt=True))
    outs = greedy_generate(model, tokenizer, prompts, 24)
    ok = [check_answer(tokenizer.decode(o, skip_special_tokens=True), it.aliases) for o, it in zip(outs, items)]
    return sum(ok) / len(ok)


def validation_paraphrase(model, tokenizer, world, preset, seed):
    """Accuracy of the validation people's questions asked again in held-out
    frames (an RNG of their own), next to the same questions as generated."""
    import random
    rng = random.Random(f"{seed}-validation-paraphrase")
    people = {p.id: p for p in world.people}
    items = world.qa["validation"]
    heldout = [ask(people[it.person_id], it.attribute, rng, "validation_paraphrase", "0", preset.world, heldout=True)
               for it in items]
    asked = np.mean(answer_items(model, tokenizer, items)[3])
    moved = np.mean(answer_items(model, tokenizer, heldout)[3])
    return {"validation": float(asked), "validation_paraphrase": float(moved),
            "ratio": float(moved / asked) if asked else None}


def main():
    name, out = sys.argv[1], Path(sys.argv[2])
    name, _, seed = name.partition("@")
    seed = int(seed or 0)
    device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
    torch.set_num_threads(1)
    preset = variant_preset(name)
    patch_fact(VARIANTS[name].get("fact"))
    world = generate_world(preset.world, seed)
    texts = [d["text"] for d in world.documents]
    tokenizer = train_tokenizer(texts, preset.model.vocab_size, VARIANTS[name].get("tokenizer", "gpt2"))
    docs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    model = build_model(preset.model, tokenizer, seed)
    t1 = time.perf_counter()
    losses = train_model(model, docs, preset.train, seed, device=device)
    t2 = time.perf_counter()
    model = checkpoint_model(model.cpu(), preset.model)  # the form a build saves, so a Doubter run can use it
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / f"{name}@{seed}-model")
    tokenizer.save_pretrained(out / f"{name}@{seed}-model")
    metrics = evaluate_world(model, tokenizer, world.qa["validation"], world.qa["test"],
                             shifts={split: world.qa[split] for split in SHIFT_SPLITS}, frames=preset.world.frames)
    base = logprob_baselines(model, tokenizer, world.qa["test"])
    base["obs_acc"] = obs_accuracy(model, tokenizer, world, world.qa["test"])
    base["choice"] = validation_paraphrase(model, tokenizer, world, preset, seed)
    base["shifts"] = {split: round(metrics["qa"][split]["accuracy"], 3) for split in SHIFT_SPLITS
                      if split in metrics["qa"]}
    base["outside_refused"] = metrics.get("outside", {}).get("refused")
    t3 = time.perf_counter()
    qa = metrics["qa"]["test"]
    row = {
        "variant": f"{name}@{seed}", "corpus_tokens": int(sum(map(len, docs))),
        "params": int(sum(p.numel() for p in model.parameters())),
        "loss_last": float(np.mean(losses[-20:])), "train_s": t2 - t1, "eval_s": t3 - t2,
        "cpu_cost": preset.train.steps * preset.train.batch_size * preset.train.seq_len,
        "qa": qa["accuracy"], "buckets": {b: round(v["accuracy"], 3) for b, v in qa["by_bucket"].items()},
        "probe_prompt": metrics["probe"]["prompt"]["auroc_test"],
        "probe_prompt_m": metrics["probe"]["prompt"]["auroc_test_mentioned"],
        "probe_draft": metrics["probe"]["draft"]["auroc_test"],
        "probe_draft_m": metrics["probe"]["draft"]["auroc_test_mentioned"],
        "tool": metrics["tool_use"]["rate"], "tool_bad": [e for e in metrics["tool_use"]["examples"] if not e["ok"]][:3],
        "calculator": {k: metrics["calculator_use"][k] for k in ("rate", "answer_rate")},
        **base,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}@{seed}.json").write_text(json.dumps(row, indent=1))
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
