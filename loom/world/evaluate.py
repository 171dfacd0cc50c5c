"""Evaluation of a world base: greedy QA accuracy by mention bucket, hidden
state probes of pass-1 correctness (at the last prompt token and at the end of
the greedy draft), and native tool-call completion.

Probes are fitted on validation people and scored on test people; the layer
is chosen by cross-validation on validation only. This module knows nothing
about how the base was trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from meta_spider.policies.actions import is_refusal

from .chat import CALCULATOR_TOOL, LOOKUP_TOOL, TOOL_CALL_OPEN, calculator_exchange, render_chat
from .frames import arithmetic_question
from .generator import OUTSIDE, QAItem, question_variants
from .presets import BUCKETS
from .probe import auroc_or_nan, cross_validated_auroc, world_probe
from .scorer import check_answer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


PROBE_L2_GRID: tuple[float, ...] = (0.1, 1.0, 10.0)
"""Probe penalties tried per layer."""


def qa_prompt(question: str) -> str:
    """The chat prompt of a bare QA question (no system turn, no tools)."""
    return render_chat([{"role": "user", "content": question}], add_generation_prompt=True)


def tool_prompt(question: str, tools: Sequence[dict[str, Any]] = (LOOKUP_TOOL,)) -> str:
    """The prompt offering ``tools`` (the lookup tool), prefilled with the call tag."""
    return render_chat([{"role": "user", "content": question}], tools=list(tools),
                       add_generation_prompt=True) + TOOL_CALL_OPEN + "\n"


def _stop_ids(tokenizer: "PreTrainedTokenizerBase") -> list[int]:
    return [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.bos_token_id]


def greedy_generate(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", prompts: Sequence[str],
                    max_new_tokens: int, batch_size: int = 64) -> list[list[int]]:
    """Greedy continuations of ``prompts`` as token ids, cut before the first
    stop token (``<|im_end|>`` or the bos/document separator)."""
    import torch

    stops = set(_stop_ids(tokenizer))
    outputs: list[list[int]] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                            add_special_tokens=False)
            generated = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=sorted(stops), pad_token_id=tokenizer.pad_token_id,
            )[:, enc["input_ids"].shape[1]:]
            for row in generated.tolist():
                cut = next((i for i, t in enumerate(row) if t in stops), len(row))
                outputs.append(row[:cut])
    return outputs


def hidden_at_end(model: "PreTrainedModel", sequences: Sequence[Sequence[int]], pad_id: int,
                  batch_size: int = 64) -> np.ndarray:
    """Residual stream after every decoder layer at each sequence's last
    token: array (n, num_layers, hidden) where index L is after layer L
    (``hidden_states[L + 1]`` in transformers)."""
    import torch

    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start:start + batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, seq in enumerate(chunk):
                ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                mask[i, width - len(seq):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
            stacked = torch.stack(out.hidden_states[1:], dim=1)[:, :, -1, :]
            rows.append(stacked.float().numpy())
    return np.concatenate(rows)


def parse_tool_call(text: str) -> tuple[str | None, dict[str, Any] | None, str]:
    """Parse one ``<tool_call>`` block with the native Hermes parser:
    (tool name, arguments, parser used); (None, None, ...) when it holds no call."""
    from meta_spider.native import NativeToolRenderer

    calls = NativeToolRenderer(family="hermes").parse(text).tool_calls
    if not calls:
        return None, None, "native-hermes"
    return calls[0].name, calls[0].arguments, "native-hermes"


def _accuracy_table(items: Sequence[QAItem], correct: Sequence[bool]) -> dict[str, Any]:
    table: dict[str, Any] = {"n": len(items), "accuracy": float(np.mean(correct)) if items else float("nan")}
    table["by_bucket"] = {}
    for bucket in BUCKETS:
        hits = [c for item, c in zip(items, correct) if item.bucket == bucket]
        if hits:
            table["by_bucket"][bucket] = {"n": len(hits), "accuracy": float(np.mean(hits))}
    return table


def answer_items(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", items: Sequence[QAItem],
                 max_new_tokens: int = 16) -> tuple[list[list[int]], list[int], list[str], list[bool]]:
    """Greedy answers to ``items``: (draft ids, prompt ids lengths, texts, correct)."""
    prompts = [qa_prompt(item.question) for item in items]
    drafts = greedy_generate(model, tokenizer, prompts, max_new_tokens)
    texts = [tokenizer.decode(d, skip_special_tokens=True) for d in drafts]
    correct = [check_answer(text, item.aliases) for text, item in zip(texts, items)]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return drafts, prompt_ids, texts, correct


def evaluate_world(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase",
                   validation: Sequence[QAItem], test: Sequence[QAItem],
                   shifts: dict[str, Sequence[QAItem]] | None = None, frames: int = 0) -> dict[str, Any]:
    """All metrics of a base on the world's held-out splits.

    Validation items are asked in three training frames each (of the
    first ``frames`` when that is set; three times
    the probe's training samples); test items once, as generated. ``shifts``
    (split name -> items) adds the accuracy on each answerable shifted split
    and, for questions the world cannot answer, the share the base refuses."""
    import torch

    validation = [variant for item in validation for variant in question_variants(item, frames)]
    torch.manual_seed(0)
    model.eval()
    results: dict[str, Any] = {"qa": {}, "probe": {}}
    features: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    for split, items in (("validation", validation), ("test", test)):
        drafts, prompt_ids, texts, correct = answer_items(model, tokenizer, items)
        results["qa"][split] = _accuracy_table(items, correct)
        labels[split] = np.asarray(correct, dtype=np.int64)
        features[split] = {
            "prompt": hidden_at_end(model, prompt_ids, tokenizer.pad_token_id),
            "draft": hidden_at_end(model, [p + d for p, d in zip(prompt_ids, drafts)], tokenizer.pad_token_id),
        }
        samples[split] = [{"question": it.question, "answer": it.answer, "prediction": t, "correct": c}
                          for it, t, c in list(zip(items, texts, correct))[:12]]
    results["samples"] = samples
    mentioned = np.array([item.bucket != "unseen" for item in test])
    groups = [item.person_id for item in validation]
    for position in ("prompt", "draft"):
        val_x, test_x = features["validation"][position], features["test"][position]
        per_layer = []
        for layer in range(val_x.shape[1]):
            # The penalty is chosen with the layer, by cross-validation on
            # validation people only.
            cv, l2 = max((cross_validated_auroc(val_x[:, layer], labels["validation"], l2=l2, groups=groups), l2)
                         for l2 in PROBE_L2_GRID)
            probe = world_probe(l2).fit(val_x[:, layer], labels["validation"])
            scores = probe.decision_function(test_x[:, layer])
            per_layer.append({
                "layer": layer, "l2": l2, "cv_auroc_validation": cv,
                "auroc_test": auroc_or_nan(scores, labels["test"]),
                "auroc_test_mentioned": auroc_or_nan(scores[mentioned], labels["test"][mentioned]),
            })
        best = max(per_layer, key=lambda row: (np.nan_to_num(row["cv_auroc_validation"]), -row["layer"]))
        results["probe"][position] = {"best_layer": best["layer"], "auroc_test": best["auroc_test"],
                                      "auroc_test_mentioned": best["auroc_test_mentioned"],
                                      "per_layer": per_layer}
    results["tool_use"] = evaluate_tool_use(model, tokenizer, test)
    results["calculator_use"] = evaluate_calculator_use(model, tokenizer)
    for split, items in (shifts or {}).items():
        answerable = [item for item in items if item.attribute != OUTSIDE]
        if answerable:
            results["qa"][split] = _accuracy_table(answerable, answer_items(model, tokenizer, answerable)[3])
        outside = [item for item in items if item.attribute == OUTSIDE]
        if outside:
            texts = answer_items(model, tokenizer, outside)[2]
            refused = [is_refusal(text) for text in texts]
            results["outside"] = {"split": split, "n": len(outside), "refused": float(np.mean(refused)),
                                  "answered": int(len(refused) - sum(refused)),
                                  "examples": [{"question": i.question, "reply": t}
                                               for i, t, r in zip(outside, texts, refused) if not r][:8]}
    return results


def evaluate_calculator_use(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase",
                            n: int = 100, seed: int = 12345) -> dict[str, Any]:
    """Share of ``n`` arithmetic questions (from an RNG of their own) where
    the base, offered the calculator and the lookup as the agent offers
    them and prefilled with ``<tool_call>``, writes a calculator call whose
    expression has the question's value (``rate``), and where, given the
    call and the built-in calculator's result, the first number of its
    answer is that result (``answer_rate``)."""
    import random
    import re

    from meta_spider.tools.calculator import CalculatorError, evaluate

    rng = random.Random(seed)
    pairs = [arithmetic_question(rng) for _ in range(n)]
    prompts = [tool_prompt(question, (CALCULATOR_TOOL, LOOKUP_TOOL)) for question, _ in pairs]
    hits = []
    for (question, expression), ids in zip(pairs, greedy_generate(model, tokenizer, prompts, 48)):
        name, arguments, _ = parse_tool_call(TOOL_CALL_OPEN + "\n" + tokenizer.decode(ids, skip_special_tokens=True))
        written = arguments.get("expression") if isinstance(arguments, dict) else None
        try:
            hits.append(name == "calculator" and isinstance(written, str) and evaluate(written) == evaluate(expression))
        except CalculatorError:
            hits.append(False)
    exchanges = [calculator_exchange(question, expression) for question, expression in pairs]
    answered = [render_chat(messages, tools=[CALCULATOR_TOOL, LOOKUP_TOOL], add_generation_prompt=True)
                for messages in exchanges]
    read_back = []
    for messages, ids in zip(exchanges, greedy_generate(model, tokenizer, answered, 16)):
        result = messages[-1]["content"]
        number = re.search(r"-?\d+(?:\.\d+)?", tokenizer.decode(ids, skip_special_tokens=True))
        read_back.append(number is not None and number.group() == result)
    return {"n": n, "rate": float(np.mean(hits)), "answer_rate": float(np.mean(read_back))}


def evaluate_tool_use(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase",
                      items: Sequence[QAItem]) -> dict[str, Any]:
    """Share of ``items`` where the base, offered the lookup tool and
    prefilled with ``<tool_call>``, completes a parseable ``lookup`` call
    naming the item's person."""
    completions = greedy_generate(model, tokenizer, [tool_prompt(i.question) for i in items], 48)
    hits, parser = [], "native-hermes"
    examples = []
    for item, ids in zip(items, completions):
        text = TOOL_CALL_OPEN + "\n" + tokenizer.decode(ids, skip_special_tokens=True)
        name, arguments, parser = parse_tool_call(text)
        query = arguments.get("query") if isinstance(arguments, dict) else None
        ok = name == "lookup" and isinstance(query, str) and query.strip() == item.entity
        hits.append(ok)
        if len(examples) < 4 or (not ok and len(examples) < 8):
            examples.append({"entity": item.entity, "completion": text, "ok": ok})
    return {"n": len(items), "rate": float(np.mean(hits)) if hits else float("nan"), "parser": parser,
            "examples": examples}
