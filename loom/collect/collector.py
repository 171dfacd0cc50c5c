"""ActivationDatasetCollector: pass 1 over a question set, written to disk
as an activation dataset (:mod:`meta_spider.loom.collect.activations`).

For every question the plain base (no Doubter, no injection) answers
greedily; the collector keeps the states at the target layers at the last
prompt token and at the end of the greedy draft, the answer's ids, its mean
token log-prob and the first token's max softmax probability (the two
baselines), and ``pass1_correct = check_correctness(answer_text, example)``.

Every read is the pipeline's public pass 1 for activation datasets,
``pipe.collect_states_ids``: with ``batch_size=1`` that is the very code of
inference's pass 1 (``TwoPassDecoder.read_states``, behind ``pipe.read_ids``),
so training reads exactly what inference reads, token log-probs and the first
answer token's probability included; larger batches decode left-padded
batches (:mod:`meta_spider.wrapper.batched`): faster, equal up to float
rounding.

Collection is resumable: shards are written as they fill (shard file
atomically, then the ``examples.jsonl`` lines, fsynced, then
``collection.json``, atomically, which commits them). A restart with the same
output folder checks that model, layers, dataset and questions match
(:class:`CollectionMismatchError` otherwise; the scorer is not recorded, so
resume with the same one), drops whatever was not committed, and continues.
Shard boundaries are fixed multiples of ``shard_size``, so the result is
byte-identical to an uninterrupted run. A collection asked for the PMI
signals first computes the base's mean next-token distribution over the
train prompts (prefill only) and keeps it beside the shards
(:mod:`meta_spider.loom.collect.reference`); a resume must compute the same.

This module knows nothing about command lines or training.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from meta_spider.loom.collect.activations import (
    COLLECTION_FILE,
    EXAMPLES_FILE,
    FORMAT_VERSION,
    READ_POSITIONS,
    SHARD_PREFIX,
    SHARD_SUFFIX,
    ActivationDataset,
    ActivationFormatError,
    append_example_records,
    pad_rows,
    read_collection_json,
    read_committed,
    shard_name,
    write_collection_json,
    write_shard,
)
from meta_spider.loom.collect.ranks import HEADER_KEYS, Ranks, collect_on_ranks, rank_items
from meta_spider.loom.datasets import (
    QADataset,
    QAExample,
    QAPrompt,
    canonical_split,
    check_answer,
)
from meta_spider.loom.progress import progress_bar
from meta_spider.plugins.errors import MetaSpiderError
from meta_spider.loom.collect.reference import REFERENCE_FILE, reference_record, write_reference
from meta_spider.wrapper.signals import (
    SIGNALS,
    Occlusion,
    check_signal_names,
    last_user_text,
    reads_occlusion,
    reads_reference,
    signal_vector,
)

__all__ = ["ActivationDatasetCollector", "CollectionItem", "CollectionMismatchError", "render_qa_prompt"]

PathLike = Union[str, os.PathLike]
CheckFn = Callable[[str, QAExample], bool]
GroundTruth = Union[str, Sequence[str]]


class CollectionMismatchError(MetaSpiderError, fields=("path", "field", "recorded", "requested")):
    """An output folder holds a collection made with other settings, so it
    cannot be resumed. ``field`` names what differs."""

    template = ("{path}: the collection there was made with {field}={recorded!r}, but this run asks for "
                "{requested!r}. Resume with the same settings, or collect into a new (or emptied) folder.")

    def __post_init__(self) -> None:
        self.path = Path(self.path)


@dataclass(frozen=True)
class CollectionItem:
    """One question as the collector asks it."""

    index: int
    split: str
    example: QAExample
    prompt_text: str
    """The prompt rendered with the chat template (what the base sees)."""
    user_text: str | None = None
    """The user's words in it (the last user message), where the occlusion
    signal finds the question's words; not part of :meth:`record`."""

    def record(self) -> dict[str, Any]:
        """The fields that identify this item (hashed into ``questions_sha256``)."""
        return {"index": self.index, "id": self.example.id, "split": self.split, "question": self.example.question,
                "ground_truths": list(self.example.ground_truths), "prompt_text": self.prompt_text}


@dataclass
class ExampleReading:
    """Pass 1 on one prompt."""

    prompt_ids: list[int]
    answer_ids: list[int]
    answer_text: str
    states_prompt: torch.Tensor
    """``[L, d]``."""
    states_draft: torch.Tensor
    first_token_max_prob: float
    answer_mean_logprob: float
    signals: list[float]
    """The recorded pass-1 signals (the collector's ``signals`` order)."""


def render_qa_prompt(pipe: Any, prompt: QAPrompt) -> str:
    """A dataset's prompt through the base's chat template with its template
    switches (e.g. thinking off); the plain joined text without a template."""
    tokenizer = pipe.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        return prompt.as_text()
    return tokenizer.apply_chat_template([dict(m) for m in prompt.messages], tokenize=False,
                                         add_generation_prompt=True, **dict(prompt.template_kwargs))


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


class ActivationDatasetCollector:
    """Collect pass-1 activations of a frozen base over questions.

    ``pipe`` is a :class:`~meta_spider.wrapper.MetaSpiderPipeline` (its
    Doubter, if any, is ignored). An answer is scored by
    ``check_correctness(prediction, truth)`` (two strings: right when it
    accepts one of the question's ground truths), or by
    ``check_example(prediction, example)`` (the :class:`QAExample`), or by
    default with the dataset's ``check_fn`` (normalised exact match for
    plain question lists); ``target_layers`` defaults to
    the pipeline config's. ``batch_size=1`` (default) reads each question
    with the pipeline's own pass 1, bit for bit what inference reads; larger
    batches decode left-padded batches (:meth:`read_batch`), faster and equal
    up to float rounding. ``shard_size`` examples go into one shard (a
    multiple of ``batch_size``, so a resumed run forms the same batches).
    ``signals`` names the pass-1 signals recorded (``SIGNALS`` plus
    ``PMI_SIGNALS`` for the PMI ones); ``log_reference`` gives their
    ``p_ref`` instead of computing it over the train prompts (a Doubter's own,
    to collect new questions it is to be evaluated on: its PMI must be read
    against the distribution it was trained with).
    """

    def __init__(
        self,
        pipe: Any,
        *,
        max_new_tokens: int = 48,
        check_correctness: Callable[[str, str], bool] | None = None,
        check_example: CheckFn | None = None,
        target_layers: Sequence[int] | None = None,
        batch_size: int = 1,
        shard_size: int = 256,
        show_progress: bool = True,
        console: Any = None,
        signals: Sequence[str] = SIGNALS,
        log_reference: Any = None,
    ) -> None:
        for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size), ("shard_size", shard_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if shard_size % batch_size:
            raise ValueError(f"shard_size={shard_size!r} must be a multiple of batch_size={batch_size!r}")
        for name, check in (("check_correctness", check_correctness), ("check_example", check_example)):
            if check is not None and not callable(check):
                raise ValueError(f"{name} must be callable, got {check!r}")
        if check_correctness is not None and check_example is not None:
            raise ValueError("give check_correctness (prediction, truth) or check_example (prediction, example), "
                             "not both")
        self.pipe = pipe
        self.max_new_tokens = max_new_tokens
        self.check_correctness = check_example
        """The scorer as ``(prediction, example) -> bool`` (None: the dataset's)."""
        if check_correctness is not None:
            self.check_correctness = lambda prediction, example: any(
                bool(check_correctness(prediction, truth)) for truth in example.ground_truths)
        if target_layers is None:
            target_layers = pipe.config.resolve(pipe.num_layers)[0]
        else:
            from meta_spider.wrapper.config import resolve_layers

            target_layers = resolve_layers(list(target_layers), pipe.num_layers)
        self.target_layers = tuple(int(layer) for layer in target_layers)
        self.batch_size = batch_size
        self.shard_size = shard_size
        self.show_progress = show_progress
        self.console = console
        self.signals = check_signal_names(signals)
        """The pass-1 signals recorded per example (default: every one that
        needs no reference distribution)."""
        self.log_reference: Any = None
        """``[V]`` float32 log p_ref of the running collection (PMI signals only)."""
        self.given_reference: Any = None
        """The ``log_reference`` given to the constructor (None: computed)."""
        if log_reference is not None:
            import numpy as np

            from meta_spider.wrapper.signals import reference_problem

            given, size = np.asarray(log_reference, dtype=np.float32), getattr(self.pipe, "vocab_size", None)
            if reference_problem(given) is not None or (size is not None and given.shape[0] != size):
                raise ValueError(f"log_reference must hold one finite log-probability per token of this base's "
                                 f"vocabulary ({size}), got shape {list(given.shape)}")
            self.given_reference = given
        self._last: ActivationDataset | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None

    # ------------------------------------------------------------ entry points

    def collect(
        self,
        questions: Sequence[str],
        ground_truths: Sequence[GroundTruth],
        *,
        output_dir: PathLike | None = None,
        ids: Sequence[str] | None = None,
    ) -> ActivationDataset:
        """Collect plain questions (each rendered as one user message with the
        chat template); ``ground_truths[i]`` is the answer or the accepted
        answers of question ``i``. Without ``output_dir`` the collection goes
        to a temporary folder (keep it with :meth:`save`)."""
        if len(questions) != len(ground_truths):
            raise ValueError(f"got {len(questions)} questions but {len(ground_truths)} ground truths")
        if ids is not None and len(ids) != len(questions):
            raise ValueError(f"got {len(questions)} questions but {len(ids)} ids")
        items = []
        for index, (question, truth) in enumerate(zip(questions, ground_truths)):
            accepted = [truth] if isinstance(truth, str) else list(truth)
            if not accepted:
                raise ValueError(f"question {index} ({question!r}) has no ground truth")
            example = QAExample(id=str(ids[index]) if ids is not None else f"q{index}", question=question,
                                answer=accepted[0], aliases=tuple(accepted[1:]))
            items.append(CollectionItem(index, "all", example, self.pipe.render(question), question))
        description = {"name": "questions", "options": {}, "splits": ["all"], "sizes": {"all": len(items)}}
        check = self.check_correctness or (lambda answer, example: check_answer(answer, example.ground_truths))
        return self.run(items, description, check, output_dir)

    def collect_dataset(
        self,
        dataset: QADataset,
        splits: Sequence[str] | None = None,
        *,
        max_examples: int | None = None,
        output_dir: PathLike | None = None,
        ranks: Ranks | None = None,
    ) -> ActivationDataset:
        """Collect the given ``splits`` (default: all) of a dataset, at most
        ``max_examples`` per split, prompts from ``dataset.prompt`` rendered
        with the chat template; scored with ``check_correctness`` or the
        dataset's ``check_fn``. ``ranks``: this process's share of a
        data-parallel collection (see :meth:`run`)."""
        if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
            raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}")
        splits = list(dataset.splits if splits is None else splits)
        items: list[CollectionItem] = []
        splits = [canonical_split(split) for split in splits]  # recorded as split_indices() looks them up
        for split in splits:
            examples = dataset.split(split)
            if max_examples is not None:
                examples = examples[:max_examples]
            for example in examples:
                prompt = dataset.prompt(example)
                items.append(CollectionItem(len(items), split, example, render_qa_prompt(self.pipe, prompt),
                                            last_user_text(prompt.messages) if reads_occlusion(self.signals) else None))
        description = {**dataset.describe(), "selected_splits": splits, "max_examples": max_examples}
        return self.run(items, description, self.check_correctness or dataset.check_fn, output_dir, ranks=ranks)

    def save(self: Any, path: PathLike) -> Path:
        """Copy the last collection to ``path`` (a no-op when it is already
        there). Also callable on the class with the samples,
        ``ActivationDatasetCollector.save(samples, path)``. Either way
        ``path`` becomes a folder of safetensors shards and JSON, whatever its
        suffix (``samples.pt`` is a folder name; nothing is pickled)."""
        if isinstance(self, ActivationDataset):  # called on the class: ``self`` is the samples
            return self.save(path)
        if self._last is None:
            raise RuntimeError("nothing collected yet: call collect() or collect_dataset() first")
        return self._last.save(path)

    # ------------------------------------------------------------ reading

    def read_example(self, prompt_text: str, user_text: str | None = None) -> ExampleReading:
        """Pass 1 on one rendered prompt (what inference's pass 1 computes)."""
        return self.read_batch([prompt_text], None if user_text is None else [user_text])[0]

    def read_batch(self, prompt_texts: Sequence[str],
                   user_texts: Sequence[str | None] | None = None) -> list[ExampleReading]:
        """Pass 1 on rendered prompts through the pipeline's
        :meth:`~meta_spider.wrapper.MetaSpiderPipeline.collect_states_ids`:
        one prompt bit for bit as inference reads it, several as one
        left-padded batch (faster, equal up to float rounding, so one token
        may flip at a near tie). ``user_texts``: the user's words in each
        prompt, which the occlusion signal needs."""
        rows = [self.pipe.encode(text)[0] for text in prompt_texts]
        reads = self.pipe.collect_states_ids(rows, layers=self.target_layers, max_draft_tokens=self.max_new_tokens)
        occlusions: list[Occlusion | None] = [None] * len(rows)
        if reads_occlusion(self.signals):
            if user_texts is None or len(user_texts) != len(rows) or any(text is None for text in user_texts):
                raise ValueError("the occlusion signal needs the user's words of every prompt (user_texts)")
            occlusions = self.pipe.collect_occlusions(prompt_texts, user_texts, [row.tolist() for row in rows],
                                                      [read.draft_ids for read in reads])
        return [ExampleReading(
            prompt_ids=row.tolist(),
            answer_ids=list(read.draft_ids),
            answer_text=self.pipe.decode(read.draft_ids),
            states_prompt=read.prompt_states[0].detach().float().cpu(),
            states_draft=read.draft_states[0].detach().float().cpu(),
            first_token_max_prob=read.first_token_max_prob,
            answer_mean_logprob=read.draft_logprob_mean,
            signals=signal_vector(self.signals, read.prompt_logprobs, read.draft_logprobs, prompt_ids=row.tolist(),
                                  log_reference=self.log_reference, occlusion=occlusion).tolist(),
        ) for row, read, occlusion in zip(rows, reads, occlusions)]

    # ------------------------------------------------------------ the run

    def reference_distribution(self, items: Sequence[CollectionItem]) -> tuple[Any, dict[str, Any]]:
        """``(log p_ref [V] float32, its collection.json record)`` over the
        prompts of the ``train`` items (all items when there are none)."""
        import numpy as np

        chosen = [item for item in items if item.split == "train"]
        split = "train" if chosen else "all"
        chosen = chosen or list(items)
        rows = [self.pipe.encode(item.prompt_text)[0] for item in chosen]
        log_reference = self.pipe.reference_logprobs(rows).astype(np.float32)
        return log_reference, reference_record(log_reference, split, len(rows))

    def _header(self, items: Sequence[CollectionItem], description: Mapping[str, Any]) -> dict[str, Any]:
        header = {
            "format_version": FORMAT_VERSION,
            "model": dict(self.pipe.fingerprint()),
            "target_layers": list(self.target_layers),
            "read_positions": list(READ_POSITIONS),
            "signals": list(self.signals),
            "max_new_tokens": self.max_new_tokens,
            "dataset": json.loads(json.dumps(dict(description))),
            "shard_size": self.shard_size,
            "questions_sha256": _sha256_json([item.record() for item in items]),
            "total_examples": len(items),
        }
        self.log_reference = None
        if reads_reference(self.signals) and self.given_reference is not None:
            self.log_reference = self.given_reference
            header["reference"] = reference_record(self.given_reference, "given", 0)
        elif reads_reference(self.signals):
            self.log_reference, header["reference"] = self.reference_distribution(items)
        return header

    def run(self, items: Sequence[CollectionItem], description: Mapping[str, Any], check: CheckFn,
            output_dir: PathLike | None, *, ranks: Ranks | None = None) -> ActivationDataset:
        """Collect ``items`` into ``output_dir``, resuming what is there. With
        ``ranks`` of several processes this one collects its shards into its
        rank folder, and rank 0 merges them once all are complete
        (:mod:`meta_spider.loom.collect.ranks`); other ranks return their part."""
        if output_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="meta-spider-activations-")
            output_dir = self._scratch.name
        if not items:
            raise ValueError("there are no questions to collect (empty question list or splits)")
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        header = self._header(items, description)
        if ranks is not None and ranks.parallel:
            return self._run_rank(items, header, check, folder, ranks)
        self._collect(items, self._open(folder, header), folder, check)
        self._last = ActivationDataset.load(folder)
        if self._scratch is not None and Path(self._scratch.name) == folder:
            self._last.scratch = self._scratch  # the temporary folder lives as long as the dataset
        return self._last

    def _collect(self, items: Sequence[CollectionItem], info: dict[str, Any], folder: Path, check: CheckFn) -> None:
        """Read and commit ``items`` shard by shard from the first one ``info`` does not commit yet."""
        start = int(info["num_examples"])
        with progress_bar("collecting", len(items), enabled=self.show_progress and start < len(items),
                          console=self.console, completed=start) as progress:
            for shard_start in range(start, len(items), self.shard_size):
                shard_items = items[shard_start: shard_start + self.shard_size]
                readings: list[ExampleReading] = []
                for offset in range(0, len(shard_items), self.batch_size):
                    batch = shard_items[offset: offset + self.batch_size]
                    readings.extend(self.read_batch([item.prompt_text for item in batch],
                                                    [item.user_text for item in batch]))
                    progress.advance(len(readings) - offset)
                self._commit_shard(folder, info, shard_items, readings, check)
        if not info["complete"]:
            info["complete"] = True
            write_collection_json(folder, info)

    def _run_rank(self, items: Sequence[CollectionItem], header: dict[str, Any], check: CheckFn, folder: Path,
                  ranks: Ranks) -> ActivationDataset:
        mine = rank_items(items, ranks, self.shard_size, lambda item: item.index)
        # The rank folder records the whole collection's header: its shards are a part of that one.
        done = collect_on_ranks(folder, header, ranks, lambda own: self._collect(mine, self._open(own, header), own,
                                                                                 check),
                                ordered=_ordered, is_collection_file=_is_collection_file, console=self.console)
        self._last = ActivationDataset.load(done)
        return self._last

    def _commit_shard(self, folder: Path, info: dict[str, Any], items: Sequence[CollectionItem],
                      readings: Sequence[ExampleReading], check: CheckFn) -> None:
        correct = [bool(check(reading.answer_text, item.example)) for item, reading in zip(items, readings)]
        prompt_ids, prompt_lengths = pad_rows([r.prompt_ids for r in readings])
        answer_ids, answer_lengths = pad_rows([r.answer_ids for r in readings])
        tensors = {
            "states_prompt": torch.stack([r.states_prompt for r in readings]),
            "states_draft": torch.stack([r.states_draft for r in readings]),
            "pass1_correct": torch.as_tensor(correct, dtype=torch.uint8),
            "first_token_max_prob": torch.as_tensor([r.first_token_max_prob for r in readings], dtype=torch.float32),
            "answer_mean_logprob": torch.as_tensor([r.answer_mean_logprob for r in readings], dtype=torch.float32),
            "signals": torch.as_tensor([r.signals for r in readings], dtype=torch.float32),
            "prompt_ids": prompt_ids, "prompt_lengths": prompt_lengths,
            "answer_ids": answer_ids, "answer_lengths": answer_lengths,
        }
        start, end = items[0].index, items[-1].index + 1
        name = shard_name(start // self.shard_size)
        write_shard(folder / name, tensors, start, end)
        records = [{**item.record(), "answer_text": reading.answer_text, "pass1_correct": ok,
                    "answer_token_count": len(reading.answer_ids)}
                   for item, reading, ok in zip(items, readings, correct)]
        append_example_records(folder, records)
        info["shards"].append(name)
        # A count, not the end index: a rank's folder holds every W-th shard only.
        info["num_examples"] = int(info["num_examples"]) + len(items)
        info["complete"] = info["num_examples"] == info["total_examples"]
        write_collection_json(folder, info)

    def _open(self, folder: Path, header: dict[str, Any]) -> dict[str, Any]:
        """Start a collection in ``folder`` or recover the committed part of
        one there (checking it was made with the same settings)."""
        ours = [p for p in folder.iterdir() if _is_collection_file(p.name)]
        if not (folder / COLLECTION_FILE).is_file():
            strangers = sorted(p.name for p in folder.iterdir() if p not in ours)
            if strangers:
                raise ActivationFormatError(folder, f"holds files that are not an activation dataset ({strangers[:5]})",
                                            "collect into a new or empty folder")
            for path in ours:  # debris of a run killed before its first commit
                path.unlink()
            (folder / EXAMPLES_FILE).touch()  # before the commit point, so a committed folder always has it
            info = _ordered({**header, "num_examples": 0, "shards": [], "complete": False})
            self._write_reference(folder)  # before the commit point, like the examples file
            write_collection_json(folder, info)
            return info
        info = read_collection_json(folder)
        for key in HEADER_KEYS:
            if info.get(key) != header.get(key):
                raise CollectionMismatchError(folder, "questions" if key == "questions_sha256" else key,
                                              info.get(key), header.get(key))
        examples, end = read_committed(folder, info, "collect into a new folder")
        # Anything written after the last commit (a shard, jsonl lines, a
        # temporary file) is dropped; the shard is recomputed identically.
        with open(folder / EXAMPLES_FILE, "r+b") as stream:
            stream.truncate(end)
        for path in ours:
            if path.name not in info["shards"] and path.name not in (COLLECTION_FILE, EXAMPLES_FILE, REFERENCE_FILE):
                path.unlink()
        self._write_reference(folder)
        return _ordered(info)

    def _write_reference(self, folder: Path) -> None:
        if self.log_reference is not None:
            write_reference(folder, self.log_reference)


def _ordered(info: Mapping[str, Any]) -> dict[str, Any]:
    """collection.json keys in one fixed order (the contract's, then ours)."""
    order = ("format_version", "model", "target_layers", "read_positions", "max_new_tokens", "dataset",
             "num_examples", "shards", "complete", "shard_size", "total_examples", "questions_sha256", "signals",
             "reference")
    return {key: info[key] for key in order if key in info}


def _is_collection_file(name: str) -> bool:
    if name in (COLLECTION_FILE, EXAMPLES_FILE, REFERENCE_FILE):
        return True
    if name.startswith(".") and name.endswith(".tmp"):
        return True
    return name.startswith(SHARD_PREFIX) and name.endswith(SHARD_SUFFIX)
