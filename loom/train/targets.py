"""Training targets: what pass 2 should say for each collected example.

Without self-correction the target is the base's own greedy answer where
pass 1 was right (``confirm``) and the refusal sentence where it was wrong
(``refuse``). With self-correction, a wrong answer whose ground truth is
known gets the ground truth instead (``correct``). Every target ends with
the model's end-of-turn token, so the trained wrapper also learns to stop.

This module knows token ids, the tokenizer and the activation dataset's
rows; it knows nothing about models, losses or optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from meta_spider.policies.actions import REFUSAL_SENTENCE

TARGET_KINDS = ("confirm", "correct", "refuse")

_PROBE_USER, _PROBE_ANSWER = "Hello?", "Sure"


@dataclass
class TrainingTargets:
    """One target per dataset row (row order of the activation dataset)."""

    ids: list[list[int]]
    kinds: list[str]
    """``"confirm"``, ``"correct"`` or ``"refuse"`` per row."""

    def counts(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        """How many rows (of ``indices``, default all) get each kind of target."""
        rows = range(len(self.kinds)) if indices is None else indices
        counts = {kind: 0 for kind in TARGET_KINDS}
        for index in rows:
            counts[self.kinds[index]] += 1
        return counts


def end_of_turn_id(tokenizer: Any, eos_ids: Sequence[int]) -> int:
    """The token that closes an assistant turn.

    The chat template decides it (``<|im_end|>`` for ChatML, ``<|eot_id|>``
    for Llama 3, ``<end_of_turn>`` for Gemma), so render a one-exchange chat
    and take the first end-of-sequence id after the assistant's text; fall
    back to the first of ``eos_ids``, then to the tokenizer's eos.
    """
    eos = [int(i) for i in eos_ids]
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ANSWER}]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # noqa: BLE001 - a template may reject the probe chat; the fallback below applies
            text = ""
        position = text.rfind(_PROBE_ANSWER)
        if position >= 0:
            tail = tokenizer(text[position + len(_PROBE_ANSWER):], add_special_tokens=False)["input_ids"]
            for token in tail:
                if int(token) in eos:
                    return int(token)
    if eos:
        return eos[0]
    if getattr(tokenizer, "eos_token_id", None) is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("the tokenizer has no end-of-sequence token and the model config names none; "
                     "set tokenizer.eos_token (or generation_config.eos_token_id) before training")


def text_target(tokenizer: Any, text: str, end_of_turn: int) -> list[int]:
    """``text`` tokenised without special tokens, closed by ``end_of_turn``."""
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return ids + [end_of_turn]


def refusal_target(tokenizer: Any, end_of_turn: int, refusal: str = REFUSAL_SENTENCE) -> list[int]:
    """The refusal sentence as the model's tokens, closed by ``end_of_turn``."""
    return text_target(tokenizer, refusal, end_of_turn)


def build_targets(
    answer_ids: Sequence[Sequence[int]],
    pass1_correct: Sequence[bool],
    ground_truths: Sequence[Sequence[str]],
    tokenizer: Any,
    eos_ids: Sequence[int],
    *,
    self_correction: bool = False,
    refusal: str = REFUSAL_SENTENCE,
) -> TrainingTargets:
    """Targets for every row. ``answer_ids`` are the base's greedy answers
    (ending with an eos id when the base stopped by itself; a cut-off answer
    gets the end-of-turn token appended); a refusal row's target is
    ``refusal``."""
    if not len(answer_ids) == len(pass1_correct) == len(ground_truths):
        raise ValueError(f"need one answer, label and ground-truth list per row, got {len(answer_ids)}, "
                         f"{len(pass1_correct)} and {len(ground_truths)}")
    end_of_turn = end_of_turn_id(tokenizer, eos_ids)
    stops = {int(i) for i in eos_ids} | {end_of_turn}
    refusal_ids = refusal_target(tokenizer, end_of_turn, refusal)
    ids: list[list[int]] = []
    kinds: list[str] = []
    for answer, correct, truths in zip(answer_ids, pass1_correct, ground_truths):
        if correct:
            answer = [int(i) for i in answer]
            ids.append(answer if answer and answer[-1] in stops else answer + [end_of_turn])
            kinds.append("confirm")
        elif self_correction and truths and str(truths[0]).strip():
            ids.append(text_target(tokenizer, str(truths[0]).strip(), end_of_turn))
            kinds.append("correct")
        else:
            ids.append(list(refusal_ids))
            kinds.append("refuse")
    return TrainingTargets(ids, kinds)
