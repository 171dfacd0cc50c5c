"""Is there a pass-1 signal that survives new wording? Candidate signals,
computable on any user's model (no knowledge of where the entity sits in the
prompt, no list of the world's words; family 6 alone takes the name's place
from the world, to show what knowing it is worth), scored on held-out people
asked in the world's trained frames, in held-out frames and with misspelt
names.

The base of the ``small`` world (built or loaded from the cache) is run with
transformers on every question of the splits below; per question it records
the greedy draft (as pass 1 drafts it: chat template, at most 24 new tokens),
whether the draft is right, and

1. **PMI of the user's tokens**: ``log p(t | context) - log p_ref(t)`` for
   every token of the user turn, where ``p_ref`` is the base's own marginal
   next-token distribution (the mean softmax over every position of the
   training split's prompts; one vector over the vocabulary, computed once,
   as a collection would). An unseen frame word is rare under both terms; an
   unseen surname after a first name is surprising only under the first.
   Read as the sum, mean, minimum, mean of the k lowest and least window;
   the plain log-probs of the user's tokens beside them;
2. **agreement of sampled drafts**: K drafts sampled at temperature 1
   (K = 8; the first 4 give K = 4): the share equal to the greedy draft
   after answer normalisation, the number of distinct answers, and the
   samples' mean token log-prob;
3. **the draft against an empty question**: the greedy draft's token
   log-probs given the real prompt minus given the same chat template around
   an empty user turn (a guess the base would make for any question is
   likely under both; a fact it recalls for this person only under the
   first). Mean and minimum of the difference, and the empty-prompt
   log-probs as features of their own;
4. **the refusal sentence's log-prob**: ``log p(refusal | prompt)``, the
   whole sentence and its first token (how readily the base would say it
   does not know; added after the first three families were scored);
5. **the draft read through earlier layers** (a logit lens): each earlier
   layer's state at the draft's positions, through the base's final norm
   and its output head, gives a log-prob of every draft token; a recalled
   fact may settle before the last layer, a guess only at it. Per layer
   ``k``: the mean and minimum over the draft, the value at the draft's
   least probable token under the last layer, and the last layer's rise
   over layer ``k`` there (added after the first four families were scored).
   It reads the hidden states, so a logistic regression on it is a state
   reader that goes through the base's own head rather than a linear probe;
6. **the name, where the world says it is** (not computable on a user's
   data unless it marks the entity; added after the first five families
   were scored): the log-probs of the name's own tokens given the frame
   (sum, mean, and the tokens after its first, which a familiar name makes
   predictable whatever the frame), and the whole prompt's log-prob minus
   that of the same question with the name replaced by "someone" (the
   frame's own surprise cancels). A misspelt name is found as the closest
   span to the true one. Unanswerable questions without a name read 0;
7. **the plain log-prob where the PMI is highest**: family 6 without the
   span, the name's place guessed as the k user tokens of highest PMI and
   their plain log-probs read there (mean);
8. **the words the draft leans on**: family 6 without the span, the name's
   place found by occlusion: each word of the question is left out in turn
   and the greedy draft's log-prob given what remains is read (one more
   forward per word); the k words whose absence lowers it most are taken
   as the name, and their tokens' plain log-probs read as in family 6
   (after the first, and the mean), with the largest drop itself.

Protocol: every logistic regression is fitted on the training split; variants
are chosen on the validation people only, asked in the world's trained
frames (``validation``), in held-out frames (``validation_paraphrase``) and
with one edit in the name (``validation_misspelt``), both drawn here from the
world's held-out frame grammar and misspelling rule with an RNG of their own.
The chosen variants (per family, the one with the highest worst-case AUROC
over the three validation columns) are then scored once on ``test``,
``test_paraphrase``, ``test_misspelt`` and ``test_own_words`` (the test
questions in frames written here, outside the world's grammar: new words,
dashes, contractions), with the share of ``test_outside``
refused at the answer threshold chosen on ``validation`` by the behaviour
goals (as ``metaloom eval`` chooses it).

    python benchmarks/shift_signals.py --output benchmarks/results/shift_signals.txt
    python benchmarks/shift_signals.py --preset tiny --output benchmarks/results/shift_signals_tiny.txt

Torch runs on one thread; 5 to 8 minutes on one core for `small` (``--raw FILE`` keeps the
per-token arrays as safetensors + JSON and reuses them on the next run).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from own_frames import own_question
from report import Report

VALIDATION_SHIFTS = ("validation_paraphrase", "validation_misspelt")
TEST_SPLITS = ("test", "test_paraphrase", "test_misspelt")
OWN = "test_own_words"
CHOICE_SPLITS = ("validation", *VALIDATION_SHIFTS)
SPLITS = ("train", *CHOICE_SPLITS, *TEST_SPLITS, OWN, "test_outside")
SAMPLES = 8
MAX_NEW_TOKENS = 24
RAGGED = ("prompt_lp", "prompt_ids", "user_ids", "user_lp", "draft_lp", "null_lp", "refusal_lp", "lens_lp",
          "name_lp", "occluded1_lp", "occluded2_lp")
FLAT = ("correct", "answerable", "draft_refusal", "agree8", "agree4", "distinct8", "sample_lp8", "name_free_delta",
        "occlusion_max_drop")
NAME_STAND_IN = "someone"
"""What replaces the name in the name-free question (family 6)."""


# ------------------------------------------------------------------ questions

def world_questions(preset: str, seed: int) -> tuple[dict[str, list[Any]], Path]:
    """The loom dataset's splits plus the validation people's shifts, and the base's folder."""
    from meta_spider.loom.world import build_world
    from meta_spider.loom.world.dataset import WorldDataset, to_example
    from meta_spider.loom.world.frames import misspell
    from meta_spider.loom.world.generator import ask

    artifacts = build_world(preset, seed=seed, progress=False)
    dataset = WorldDataset(preset=preset, seed=seed, model_dir=artifacts.model_dir)
    splits = {name: dataset.split(name) for name in SPLITS if name in dataset.splits}
    world = artifacts.world()
    spec = artifacts.preset.world
    people = {person.id: person for person in world.people}
    ids = {example.id for example in splits["validation"]}
    items = [item for item in world.qa["validation"] if item.id in ids]
    rng = random.Random(f"{seed}-validation-shifts")  # never the test shifts' RNG
    paraphrase, misspelt = [], []
    for item in items:
        person = people[item.person_id]
        paraphrase.append(to_example(ask(person, item.attribute, rng, "validation_paraphrase", "0", spec,
                                         heldout=True)))
        wrong = misspell(person.name, rng)
        misspelt.append(to_example(ask(person, item.attribute, rng, "validation_misspelt", "0", spec, name=wrong)))
    splits.update(validation_paraphrase=paraphrase, validation_misspelt=misspelt)
    # the test questions once more in the benchmarks' own frames (own_frames.py): a shift no choice here was made on
    splits[OWN] = [dataclasses.replace(example, id=f"{OWN}-{example.id}", question=own_question(example))
                   for example in splits["test"]]
    return splits, artifacts.model_dir


# ------------------------------------------------------------------ running the base

def name_span(question: str, name: str) -> tuple[int, int] | None:
    """Where ``name`` (or its closest spelling: a misspelt name differs by
    an edit or two) sits in ``question``, as character offsets."""
    at = question.find(name)
    if at >= 0:
        return at, at + len(name)
    best: tuple[float, int, int] | None = None
    for size in range(max(1, len(name) - 2), len(name) + 3):
        for start in range(0, len(question) - size + 1):
            ratio = difflib.SequenceMatcher(None, question[start:start + size], name).ratio()
            if best is None or ratio > best[0]:
                best = (ratio, start, start + size)
    return None if best is None or best[0] < 0.8 else (best[1], best[2])


class Runner:
    """The base and its tokenizer; one question at a time (no padding, so
    every draft is the one pass 1 makes)."""

    def __init__(self, model_dir: Path, seed: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.seed = seed
        self.null_ids = self.encode("")[0]
        from meta_spider.policies.actions import REFUSAL_SENTENCE

        self.refusal_ids = self.tokenizer(REFUSAL_SENTENCE, add_special_tokens=False)["input_ids"]
        self.ref_sum = np.zeros(self.model.config.vocab_size, dtype=np.float64)
        self.ref_rows = 0

    def encode(self, question: str) -> tuple[list[int], list[int]]:
        """Prompt token ids and the positions of the user turn's tokens."""
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                  add_generation_prompt=True, tokenize=False)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        begin = text.index(question) if question else len(text)
        end = begin + len(question)
        user = [k for k, (a, _) in enumerate(encoded["offset_mapping"]) if begin <= a < end]
        return list(encoded["input_ids"]), user

    def logprobs(self, ids: list[int], keep_rows: bool = False) -> tuple[np.ndarray, Any]:
        """Log-prob of every token but the first given the ones before it (and the log-softmax rows)."""
        torch = self.torch
        with torch.no_grad():
            rows = self.model(torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
        picked = rows[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()
        return picked, rows if keep_rows else None

    def lens_logprobs(self, ids: list[int], draft: list[int]) -> np.ndarray:
        """Log-prob of every draft token read from each layer before the last
        through the final norm and the output head: ``[layers - 1, len(draft)]``,
        flattened (a record holds 1-D arrays)."""
        torch = self.torch
        model = self.model
        with torch.no_grad():
            states = model(torch.tensor([ids + draft]), output_hidden_states=True).hidden_states
            positions = torch.arange(len(ids) - 1, len(ids) - 1 + len(draft))
            tokens = torch.tensor(draft)
            rows = []
            for layer in range(1, model.config.num_hidden_layers):  # states[L] is the last layer, normed already
                logits = model.lm_head(model.model.norm(states[layer][0, positions]))
                rows.append(logits.double().log_softmax(-1)[torch.arange(len(draft)), tokens].numpy())
        return np.concatenate(rows)

    def prompt_positions(self, question: str, spans: list[tuple[int, int]]) -> list[int]:
        """Positions (from 1) of the prompt tokens that overlap any of
        ``spans``, character offsets into ``question``."""
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                  add_generation_prompt=True, tokenize=False)
        offset = text.index(question)
        mapping = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [k for k, (a, b) in enumerate(mapping)
                if k > 0 and any(a < offset + end and b > offset + begin for begin, end in spans)]

    def name_signals(self, question: str, name: str | None, prompt_lp: np.ndarray) -> tuple[np.ndarray, float]:
        """Log-probs of the tokens inside the name's span in ``question``, and
        the prompt's log-prob minus that of the question with the name
        replaced by :data:`NAME_STAND_IN` (nothing and 0 without a name)."""
        span = name_span(question, name) if name else None
        if span is None:
            return np.zeros(0), 0.0
        name_lp = np.array([prompt_lp[k - 1] for k in self.prompt_positions(question, [span])])
        free_ids, _ = self.encode(question[:span[0]] + NAME_STAND_IN + question[span[1]:])
        free_lp, _ = self.logprobs(free_ids)
        return name_lp, float(prompt_lp.sum() - free_lp.sum())

    def occlusion_signals(self, question: str, draft: list[int], draft_lp: np.ndarray,
                          prompt_lp: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The prompt's log-probs at the tokens of the one and of the two
        words whose absence lowers the draft's log-prob (``draft_lp`` given
        the whole question) most, and that largest drop (nothing and 0 for an
        empty question or draft)."""
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", question)]
        if not words or not draft:
            return np.zeros(0), np.zeros(0), 0.0
        full = draft_lp.sum()
        drops = []
        for begin, end in words:
            rest, _ = self.encode(" ".join((question[:begin] + question[end:]).split()))
            drops.append(full - self.logprobs(rest + draft)[0][len(rest) - 1:].sum())
        order = np.argsort(-np.array(drops), kind="stable")
        picked = [np.array([prompt_lp[k - 1] for k in self.prompt_positions(question, [words[i] for i in order[:n]])])
                  for n in (1, 2)]
        return picked[0], picked[1], float(max(drops))

    def run(self, question: str, truths: tuple[str, ...], reference: bool, name: str | None = None) -> dict[str, Any]:
        from meta_spider.loom.datasets.scoring import check_answer, normalize_answer
        from meta_spider.wrapper.refusal import is_refusal

        torch = self.torch
        ids, user = self.encode(question)
        with torch.no_grad():
            greedy = self.model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        draft = greedy[0, len(ids):].tolist()
        lp, rows = self.logprobs(ids + draft, keep_rows=reference)
        if reference:  # the marginal over the prompt's own next-token predictions
            prompt_rows = rows[:len(ids) - 1].exp().numpy()
            self.ref_sum += prompt_rows.sum(axis=0)
            self.ref_rows += len(prompt_rows)
        lens_lp = self.lens_logprobs(ids, draft)
        name_lp, name_free_delta = self.name_signals(question, name, lp[:len(ids) - 1])
        occluded1_lp, occluded2_lp, max_drop = self.occlusion_signals(question, draft, lp[len(ids) - 1:],
                                                                      lp[:len(ids) - 1])
        null_lp, _ = self.logprobs(self.null_ids + draft)
        refusal_lp = self.logprobs(ids + self.refusal_ids)[0][len(ids) - 1:]
        text = self.tokenizer.decode(draft, skip_special_tokens=True)
        torch.manual_seed(self.seed + len(ids) * 7919 + sum(ids))  # a question's samples do not depend on order
        with torch.no_grad():
            sampled = self.model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=True,
                                          temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=SAMPLES,
                                          output_scores=True, return_dict_in_generate=True)
        steps = torch.stack(sampled.scores, 1).double().log_softmax(-1)  # [K, steps, V]
        tokens = sampled.sequences[:, len(ids):]
        chosen = steps.gather(2, tokens.unsqueeze(-1))[..., 0]
        eos = set(np.atleast_1d(self.model.generation_config.eos_token_id).tolist())
        texts, sample_lp = [], []
        for k in range(SAMPLES):
            row = tokens[k].tolist()
            length = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            texts.append(normalize_answer(self.tokenizer.decode(row[:length], skip_special_tokens=True)))
            sample_lp.append(float(chosen[k, :length].mean()))
        same = [t == normalize_answer(text) for t in texts]
        return {
            "prompt_lp": lp[:len(ids) - 1], "prompt_ids": np.array(ids[1:]), "user_ids": np.array([ids[k] for k in user]),
            "user_lp": np.array([lp[k - 1] for k in user]), "draft_lp": lp[len(ids) - 1:],
            "null_lp": null_lp[len(self.null_ids) - 1:], "refusal_lp": refusal_lp, "lens_lp": lens_lp,
            "name_lp": name_lp, "name_free_delta": name_free_delta,
            "occluded1_lp": occluded1_lp, "occluded2_lp": occluded2_lp, "occlusion_max_drop": max_drop,
            "correct": float(check_answer(text, truths)), "draft_refusal": float(is_refusal(text)),
            "agree8": float(np.mean(same)), "agree4": float(np.mean(same[:4])),
            "distinct8": float(len(set(texts))), "sample_lp8": float(np.mean(sample_lp)),
        }


def collect(splits: dict[str, list[Any]], model_dir: Path, seed: int) -> tuple[dict[str, dict[str, Any]], np.ndarray,
                                                                             dict[str, float]]:
    """Per split, the ragged and flat records of every question; ``p_ref``; seconds per split."""
    import torch

    torch.set_num_threads(1)
    runner = Runner(model_dir, seed)
    raw: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for split in SPLITS:
        started = time.perf_counter()
        records = [runner.run(example.question, example.ground_truths, reference=split == "train",
                              name=example.meta.get("entity"))
                   for example in splits[split]]
        seconds[split] = time.perf_counter() - started
        answerable = [float(example.meta.get("answerable", True)) for example in splits[split]]
        raw[split] = {name: [r[name] for r in records] for name in RAGGED}
        raw[split].update({name: np.array([r[name] for r in records]) for name in FLAT if name != "answerable"})
        raw[split]["answerable"] = np.array(answerable)
        print(f"{split}: {len(records)} questions, {seconds[split]:.0f} s", flush=True)
    return raw, np.log(runner.ref_sum / runner.ref_rows), seconds


def save_raw(path: Path, raw: dict[str, dict[str, Any]], log_ref: np.ndarray, seconds: dict[str, float]) -> None:
    """Ragged arrays flattened with their lengths, as safetensors; the seconds as JSON."""
    import torch
    from safetensors.torch import save_file

    tensors = {"log_ref": torch.from_numpy(log_ref)}
    for split, fields in raw.items():
        for name in RAGGED:
            tensors[f"{split}.{name}"] = torch.from_numpy(np.concatenate(fields[name]).astype(np.float64))
            tensors[f"{split}.{name}.len"] = torch.tensor([len(a) for a in fields[name]])
        for name in FLAT:
            tensors[f"{split}.{name}"] = torch.from_numpy(np.asarray(fields[name], dtype=np.float64))
    save_file(tensors, str(path), metadata={"seconds": json.dumps(seconds)})


def load_raw(path: Path) -> tuple[dict[str, dict[str, Any]], np.ndarray, dict[str, float]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        seconds = json.loads(handle.metadata()["seconds"])
    raw: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        fields: dict[str, Any] = {name: tensors[f"{split}.{name}"] for name in FLAT}
        for name in RAGGED:
            fields[name] = np.split(tensors[f"{split}.{name}"], np.cumsum(tensors[f"{split}.{name}.len"])[:-1])
        for name in ("prompt_ids", "user_ids"):
            fields[name] = [a.astype(np.int64) for a in fields[name]]
        raw[split] = fields
    return raw, tensors["log_ref"], seconds


# ------------------------------------------------------------------ signals

def _reduce(values: np.ndarray, how: str) -> float:
    if values.size == 0:
        return 0.0
    if how == "sum":
        return float(values.sum())
    if how == "mean":
        return float(values.mean())
    if how.startswith("low"):
        return float(np.sort(values)[:int(how[3:])].mean())
    if how.startswith("high"):
        return float(np.sort(values)[-int(how[4:]):].mean())
    width = min(int(how[6:]), values.size)  # "window3"
    return float(np.convolve(values, np.ones(width), mode="valid").min())


REDUCTIONS = ("sum", "mean", "low1", "low2", "low3", "low4", "window2", "window3",
              "high1", "high2", "high3", "high4", "high5", "high6")


def signals(fields: dict[str, Any], log_ref: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate signal of one split (higher = more likely right)."""
    out: dict[str, np.ndarray] = {}
    pmi = [lp - log_ref[ids] for lp, ids in zip(fields["user_lp"], fields["user_ids"])]
    whole = [lp - log_ref[ids] for lp, ids in zip(fields["prompt_lp"], fields["prompt_ids"])]
    gain = [d - n for d, n in zip(fields["draft_lp"], fields["null_lp"])]
    for how in REDUCTIONS:
        out[f"user_lp_{how}"] = np.array([_reduce(v, how) for v in fields["user_lp"]])
        out[f"user_pmi_{how}"] = np.array([_reduce(v, how) for v in pmi])
        if how.startswith("high"):  # the template's tokens too: no user span needed
            out[f"prompt_pmi_{how}"] = np.array([_reduce(v, how) for v in whole])
    out["prompt_logprob_sum"] = np.array([v.sum() for v in fields["prompt_lp"]])
    out["prompt_logprob_mean"] = np.array([v.mean() for v in fields["prompt_lp"]])
    out["draft_logprob_mean"] = np.array([v.mean() for v in fields["draft_lp"]])
    out["draft_logprob_min"] = np.array([v.min() for v in fields["draft_lp"]])
    out["draft_logprob_sum"] = np.array([v.sum() for v in fields["draft_lp"]])
    out["sample_agree8"], out["sample_agree4"] = fields["agree8"], fields["agree4"]
    out["sample_distinct8"] = -fields["distinct8"]
    out["sample_lp8"] = fields["sample_lp8"]
    out["null_draft_mean"] = -np.array([v.mean() for v in fields["null_lp"]])
    out["null_draft_min"] = -np.array([v.min() for v in fields["null_lp"]])
    out["draft_gain_mean"] = np.array([v.mean() for v in gain])
    out["draft_gain_min"] = np.array([v.min() for v in gain])
    # how readily the base would refuse: log p(refusal sentence | prompt), whole and first token
    out["refusal_logprob_sum"] = -np.array([v.sum() for v in fields["refusal_lp"]])
    out["refusal_logprob_first"] = -np.array([v[0] for v in fields["refusal_lp"]])
    for k in (1, 2, 3, 4, 6):  # family 7: the name's place guessed by the PMI
        out[f"pmi_place_lp_top{k}"] = np.array([lp[np.argsort(-v)[:k]].mean() if lp.size else 0.0
                                                  for lp, v in zip(fields["user_lp"], pmi)])
    out["name_lp_sum"] = np.array([v.sum() for v in fields["name_lp"]])
    out["name_lp_mean"] = np.array([v.mean() if v.size else 0.0 for v in fields["name_lp"]])
    out["name_lp_after_first"] = np.array([v[1:].sum() for v in fields["name_lp"]])
    out["name_free_delta"] = fields["name_free_delta"]
    for k in (1, 2):  # family 8: the name's place found by occlusion
        out[f"occluded{k}_lp_after_first"] = np.array([v[1:].sum() for v in fields[f"occluded{k}_lp"]])
        out[f"occluded{k}_lp_mean"] = np.array([v.mean() if v.size else 0.0 for v in fields[f"occluded{k}_lp"]])
    out["occlusion_max_drop"] = fields["occlusion_max_drop"]
    layers = [lens.reshape(-1, draft.size) for lens, draft in zip(fields["lens_lp"], fields["draft_lp"])]
    weakest = [int(draft.argmin()) for draft in fields["draft_lp"]]
    for k in range(layers[0].shape[0]):
        out[f"lens{k + 1}_mean"] = np.array([rows[k].mean() for rows in layers])
        out[f"lens{k + 1}_min"] = np.array([rows[k].min() for rows in layers])
        out[f"lens{k + 1}_at_weakest"] = np.array([rows[k, i] for rows, i in zip(layers, weakest)])
        out[f"lens{k + 1}_rise"] = np.array([draft[i] - rows[k, i] for rows, draft, i
                                             in zip(layers, fields["draft_lp"], weakest)])
    return out


DRAFT = ("draft_logprob_mean", "draft_logprob_min")
DEMO = (*DRAFT, "prompt_pmi_high4")
"""The signals the demo's Doubter reads (``prompt_pmi_high4`` is the collected ``prompt_pmi_top4``)."""
RECORDED = ("prompt_logprob_sum", "prompt_logprob_mean", *DRAFT)
FAMILIES: dict[str, Callable[[str], bool]] = {
    "1. PMI of the user's tokens": lambda name: "user_pmi" in name,
    "   (PMI of every prompt token, template included)": lambda name: "prompt_pmi" in name,
    "   (plain log-probs of the user's tokens)": lambda name: "user_lp" in name,
    "2. sampled drafts": lambda name: "sample_" in name,
    "3. draft against an empty question": lambda name: "null_" in name or "gain" in name,
    "4. the refusal sentence's log-prob": lambda name: "refusal_" in name,
    "5. the draft through earlier layers (logit lens)": lambda name: name.startswith("lens"),
    "6. the name, where the world says it is": lambda name: name.startswith(("name_lp", "name_free")),
    "7. the plain log-prob where the PMI is highest": lambda name: name.startswith("pmi_place"),
    "8. the words the draft leans on (occlusion)": lambda name: name.startswith("occlu"),
}


def candidate_sets(names: list[str]) -> dict[str, tuple[str, ...]]:
    """Single signals, and each with the draft's two signals, as logistic inputs."""
    sets: dict[str, tuple[str, ...]] = {"baseline: draft (logistic)": DRAFT,
                                        "baseline: pass-1 signals (logistic)": RECORDED}
    for name in names:
        if name not in RECORDED:
            sets[f"draft + {name}"] = (*DRAFT, name)
    sets["draft + null_draft_mean + null_draft_min"] = (*DRAFT, "null_draft_mean", "null_draft_min")
    sets["draft + sample_agree8 + sample_lp8"] = (*DRAFT, "sample_agree8", "sample_lp8")
    return sets


# ------------------------------------------------------------------ scoring

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", type=Path, default=None, help="per-token arrays: reused when present, else written")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    parser.add_argument("--choose-only", action="store_true", help="print the choice columns only (no test split)")
    args = parser.parse_args(argv)

    import torch

    from meta_spider.loom.evaluate.probe import LogisticProbe
    from meta_spider.loom.evaluate.comparison import GOALS
    from meta_spider.loom.evaluate.metrics import auroc, selective_metrics, threshold_for_goals

    torch.set_num_threads(1)
    if args.raw is not None and args.raw.exists():
        raw, log_ref, seconds = load_raw(args.raw)
    else:
        splits, model_dir = world_questions(args.preset, args.seed)
        raw, log_ref, seconds = collect(splits, model_dir, args.seed)
        if args.raw is not None:
            save_raw(args.raw, raw, log_ref, seconds)
    values = {split: signals(raw[split], log_ref) for split in SPLITS}
    labels = {split: raw[split]["correct"].astype(bool) for split in SPLITS}
    names = list(values["train"])
    output = Report()
    say = output.say

    def score(chosen: tuple[str, ...]) -> dict[str, np.ndarray]:
        if len(chosen) == 1:
            return {split: values[split][chosen[0]] for split in SPLITS}
        columns = {split: np.column_stack([values[split][name] for name in chosen]) for split in SPLITS}
        probe = LogisticProbe(1.0 / len(labels["train"])).fit(columns["train"], labels["train"])
        return {split: probe.decision_function(columns[split]) for split in SPLITS}

    def aurocs(scores: dict[str, np.ndarray], columns: tuple[str, ...]) -> list[float]:
        return [auroc(scores[s][raw[s]["answerable"] > 0], labels[s][raw[s]["answerable"] > 0]) for s in columns]

    say(f"# python benchmarks/shift_signals.py   (world {args.preset}, seed {args.seed}; torch 1 thread)")
    say("base accuracy: " + ", ".join(f"{s} {labels[s][raw[s]['answerable'] > 0].mean():.3f}"
                                      for s in SPLITS if s != "test_outside"))
    say("seconds per question (greedy draft + 6 forwards + one per word + 8 samples): "
        + ", ".join(f"{s} {seconds[s] / len(labels[s]):.3f}" for s in SPLITS))
    say()
    say("A. choice columns (validation people only), AUROC; 'worst' = the lowest of the three")
    candidates = {(name,): name for name in names}
    candidates.update({chosen: label for label, chosen in candidate_sets(names).items()})
    table = {chosen: aurocs(score(chosen), CHOICE_SPLITS) for chosen in candidates}
    say("".ljust(48) + "".join(s.rjust(23) for s in CHOICE_SPLITS) + "worst".rjust(9))
    for chosen, label in candidates.items():
        row = table[chosen]
        say(label.ljust(48) + "".join(f"{v:.3f}".rjust(23) for v in row) + f"{min(row):.3f}".rjust(9))

    picked: dict[str, tuple[str, ...]] = {"baseline: draft_logprob_mean": ("draft_logprob_mean",),
                                          "baseline: pass-1 signals (logistic)": RECORDED}
    for family, member in FAMILIES.items():
        alone = [c for c in candidates if len(c) == 1 and member(c[0])]
        paired = [c for c in candidates if len(c) > 2 and any(member(n) for n in c[2:])]
        for kind, pool in (("alone", alone), ("with the draft", paired)):
            best = max(pool, key=lambda c: min(table[c]))
            picked[f"{family.strip()} ({kind}): {candidates[best]}"] = best
    if args.choose_only:
        return 0
    say()
    say("B. the chosen variants (per family, the highest 'worst' in A), scored once on the test people (AUROC)")
    width = max(len(label) for label in picked) + 2
    say("".ljust(width) + "".join(s.rjust(16) for s in (*TEST_SPLITS, OWN)))
    gates = []
    for label, chosen in picked.items():
        scores = score(chosen)
        say(label.ljust(width) + "".join(f"{v:.3f}".rjust(16) for v in aurocs(scores, (*TEST_SPLITS, OWN))))
        gates.append((label, scores, threshold_for_goals(scores["validation"], labels["validation"], GOALS)))
    say()
    say("C. their answer gates, threshold chosen on validation by the behaviour goals: coverage / refusal precision /")
    say("   knowledge loss per split; test_outside: share refused by the gate, and invented answers (answered, and the")
    say(f"   base's draft is not the refusal sentence), of {len(labels['test_outside'])}")
    for label, scores, choice in gates:
        if choice is None:
            say(f"{label}: no threshold meets the goals on validation")
            continue
        cells = []
        for split in (*TEST_SPLITS, OWN):
            m = selective_metrics(scores[split] >= choice.threshold, labels[split], labels[split])
            cells.append(f"{split} {m.coverage:.3f} / {m.refusal_precision:.3f} / {m.knowledge_loss:.3f}")
        answered = scores["test_outside"] >= choice.threshold
        invented = int((answered & (raw["test_outside"]["draft_refusal"] == 0)).sum())
        say(f"{label}\n   " + "; ".join(cells) + f"; outside refused {1 - answered.mean():.3f}, invented {invented}")

    say()
    say(f"D. on top of the draft and the PMI the demo reads ({' + '.join(DEMO)}): per family the candidate whose")
    say("   addition has the highest 'worst' on the validation columns, then scored once on the test people (AUROC)")
    columns = (*CHOICE_SPLITS, *TEST_SPLITS, OWN)
    say("".ljust(width) + "".join(s.rjust(23) for s in columns))
    alone = aurocs(score(DEMO), columns)
    say("the draft and the PMI alone".ljust(width) + "".join(f"{v:.3f}".rjust(23) for v in alone))
    for family, member in FAMILIES.items():
        pool = [name for name in names if member(name) and name not in DEMO]
        if not pool:
            continue
        best = max(pool, key=lambda name: min(aurocs(score((*DEMO, name)), CHOICE_SPLITS)))
        say(f"+ {best} ({family.strip()})".ljust(width)
            + "".join(f"{v:.3f}".rjust(23) for v in aurocs(score((*DEMO, best)), columns)))
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
