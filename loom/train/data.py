"""The trainer's view of an activation dataset: states, labels, prompt and
target ids, the train/validation split, class balance and the global
batches of an epoch.

The data order is a function of ``(seed, epoch)`` only, so a resumed run
and every data-parallel process see the same batches. This module knows
the activation dataset's layout (:mod:`meta_spider.loom.collect.activations`) and
nothing about models or losses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from meta_spider.loom.train.config import TrainerConfig, TrainerError
from meta_spider.loom.train.targets import TrainingTargets, build_targets
from meta_spider.wrapper.refusal import REFUSAL_SENTENCE, is_refusal

EPOCH_SEED_STRIDE = 1_000_003
"""Data-order seed of epoch ``e``: ``seed * EPOCH_SEED_STRIDE + e``."""


@dataclass
class TrainingRows:
    """The dataset as the training loop needs it (row order of the dataset)."""

    states: torch.Tensor
    """``[n, L, d]`` float32 at the Doubter's read position."""
    correct: torch.Tensor
    """``[n]`` bool: ``pass1_correct``."""
    prompts: list[list[int]]
    targets: TrainingTargets
    train: list[int]
    validation: list[int]
    signals: torch.Tensor | None = None
    """``[n, K]`` float32 pass-1 signals the Doubter reads (None when it reads none)."""
    log_reference: torch.Tensor | None = None
    """``[V]`` float32 log p_ref of the collection, for a Doubter reading the PMI signals."""
    unanswerable: torch.Tensor | None = None
    """``[n]`` bool: the question's only true answer is the refusal sentence
    (what the scope gate is fitted on)."""


def load_activations(activations: Any) -> Any:
    """An :class:`ActivationDataset` from a folder path, or ``activations`` as given."""
    if isinstance(activations, (str, os.PathLike)):
        from meta_spider.loom.collect.activations import ActivationDataset

        return ActivationDataset.load(activations)
    return activations


def prepare_rows(dataset: Any, doubter_config: Any, tokenizer: Any, eos_ids: Sequence[int],
                 config: TrainerConfig) -> TrainingRows:
    """Check that ``dataset`` fits the Doubter, build every row's target
    and split train from validation."""
    if list(dataset.target_layers) != list(doubter_config.target_layers):
        raise TrainerError(f"the activation dataset holds layers {list(dataset.target_layers)} but the Doubter "
                           f"reads {list(doubter_config.target_layers)}",
                           "build the Doubter with the collection's target layers, or collect again")
    states = dataset.states(doubter_config.read_position).float()
    if states.shape[-1] != doubter_config.hidden_size:
        raise TrainerError(f"the dataset's states are {states.shape[-1]} wide, the Doubter expects "
                           f"{doubter_config.hidden_size}", "train on activations collected from this base")
    correct = dataset.tensor("pass1_correct").bool()
    prompt_ids, prompt_lengths = dataset.tensor("prompt_ids"), dataset.tensor("prompt_lengths")
    answer_ids, answer_lengths = dataset.tensor("answer_ids"), dataset.tensor("answer_lengths")
    prompts = [prompt_ids[i, : int(prompt_lengths[i])].tolist() for i in range(len(dataset))]
    answers = [answer_ids[i, : int(answer_lengths[i])].tolist() for i in range(len(dataset))]
    truths = [list(example.get("ground_truths") or []) for example in dataset.examples]
    targets = build_targets(answers, correct.tolist(), truths, tokenizer, eos_ids,
                            self_correction=config.enable_self_correction, refusal=config.refusal)
    train, validation = split_rows(dataset, config)
    if config.early_stopping_metric == "val_auroc" and len({bool(correct[i]) for i in validation}) < 2:
        raise TrainerError(f"the {len(validation)} validation examples are all of one class, so their AUROC "
                           "is undefined", "use early_stopping_metric='val_loss', or a larger dataset")
    signals = log_reference = None
    if doubter_config.signals:
        from meta_spider.loom.collect.activations import ActivationFormatError
        from meta_spider.wrapper.signals import reads_reference

        try:
            signals = dataset.signals(doubter_config.signals).float()
            if reads_reference(doubter_config.signals):
                log_reference = dataset.log_reference()
        except ActivationFormatError as error:
            raise TrainerError(f"the Doubter reads the pass-1 signals {list(doubter_config.signals)}, but "
                               f"{error.path} {error.problem}", f"{error.fix}; or train without --logprob-signals") from error
    unanswerable = torch.tensor(unanswerable_examples(dataset.examples, config.refusal), dtype=torch.bool)
    return TrainingRows(states, correct, prompts, targets, train, validation, signals, log_reference, unanswerable)


def unanswerable_examples(examples: Sequence[Any], refusal: str = REFUSAL_SENTENCE) -> list[bool]:
    """Per collected example (``examples.jsonl`` records): whether its only
    true answer is the refusal sentence, a question the data holds no answer
    to (the scope gate's training questions; the base "invented" when its
    draft is not the refusal)."""
    return [bool(truths) and all(is_refusal(text, refusal) for text in truths)
            for truths in (list(example.get("ground_truths") or []) for example in examples)]


class SplitSamples:
    """Activation datasets seen as one with the trainer's two splits: every
    example of ``train`` in ``train_split``, every one of ``validation`` (if
    given) in ``validation_split``, whatever splits they were collected
    under. Reads what :func:`prepare_rows` reads; stores nothing new."""

    def __init__(self, train: Any, validation: Any, train_split: str, validation_split: str) -> None:
        self.parts = [part for part in (train, validation) if part is not None]
        if validation is not None:
            for name in ("target_layers", "model"):
                if getattr(train, name) != getattr(validation, name):
                    raise TrainerError(f"the training and validation samples differ in {name} "
                                       f"({getattr(train, name)!r} vs {getattr(validation, name)!r})",
                                       "collect both with the same pipeline and layers")
        self.target_layers = list(train.target_layers)
        self.examples = [{**example, "split": train_split} for example in train.examples]
        if validation is not None:
            self.examples += [{**example, "split": validation_split} for example in validation.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def split_indices(self, split: str) -> list[int]:
        return [i for i, example in enumerate(self.examples) if example["split"] == split]

    def _cat(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if tensors[0].dim() == 2 and tensors[0].dtype == torch.long and len(tensors) > 1:
            from meta_spider.loom.collect.activations import PAD_ID

            width = max(t.shape[1] for t in tensors)
            tensors = [torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD_ID) for t in tensors]
        return torch.cat(tensors)

    def tensor(self, name: str) -> torch.Tensor:
        return self._cat([part.tensor(name) for part in self.parts])

    def states(self, read_position: str) -> torch.Tensor:
        return self._cat([part.states(read_position) for part in self.parts])

    def signals(self, names: Sequence[str]) -> torch.Tensor:
        return self._cat([part.signals(names) for part in self.parts])

    def log_reference(self) -> torch.Tensor:
        references = [part.log_reference() for part in self.parts]
        if any(not torch.equal(references[0], other) for other in references[1:]):
            raise TrainerError("the training and validation samples hold different reference distributions "
                               "(log p_ref of the PMI signals)", "collect both in one collection")
        return references[0]


def split_rows(dataset: Any, config: TrainerConfig) -> tuple[list[int], list[int]]:
    """``(train, validation)`` row indices; without a validation split a
    seeded ``validation_fraction`` of train is held out."""
    train = list(dataset.split_indices(config.train_split))
    validation = list(dataset.split_indices(config.validation_split))
    if not validation and len(train) >= 2:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed)).tolist()
        held = max(1, round(config.validation_fraction * len(train)))
        validation = sorted(train[i] for i in order[:held])
        train = sorted(train[i] for i in order[held:])
    if not train or not validation:
        splits = sorted({example["split"] for example in dataset.examples})
        raise TrainerError(f"the activation dataset has {len(train)} {config.train_split!r} and "
                           f"{len(validation)} validation examples (splits present: {splits})",
                           "set train_split / validation_split to splits it holds, or collect more examples")
    return train, validation


def class_pos_weight(rows: TrainingRows, config: TrainerConfig) -> float:
    """The BCE weight of the correct class: ``config.pos_weight``, or
    ``n_wrong / n_correct`` of the training split with ``balance_classes``,
    else 1."""
    if config.pos_weight is not None:
        return float(config.pos_weight)
    if not config.balance_classes:
        return 1.0
    positives = int(rows.correct[rows.train].sum())
    negatives = len(rows.train) - positives
    if positives == 0 or negatives == 0:
        raise TrainerError(f"balance_classes needs both classes in the training split, got {positives} correct "
                           f"and {negatives} wrong", "collect a more varied dataset or set pos_weight")
    return negatives / positives


def epoch_batches(indices: Sequence[int], epoch: int, config: TrainerConfig, num_processes: int) -> list[list[int]]:
    """Global batches of ``epoch`` (epoch 0: unshuffled). A last batch
    smaller than the process count is dropped: some process would get
    nothing to compute."""
    indices = list(indices)
    if epoch > 0:
        generator = torch.Generator().manual_seed(config.seed * EPOCH_SEED_STRIDE + epoch)
        indices = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
    size = config.batch_size
    batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    return [batch for batch in batches if len(batch) >= num_processes]
