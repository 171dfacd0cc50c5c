"""Presets of the embedded world: how big the fictional world is, how its
mentions are distributed, the base model's shape and its training schedule.

``tiny`` is for the test suite (minutes on 2 cores); ``small`` is the demo
default. This module holds numbers only; it knows nothing about how they are
used (see :mod:`.generator`, :mod:`.train`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

BUCKETS: tuple[str, ...] = ("frequent", "occasional", "rare", "unseen")
"""Mention-frequency buckets, most mentioned first."""


@dataclass(frozen=True)
class WorldSpec:
    """Size and mention distribution of the generated world."""

    n_people: int = field(default=1000, metadata={"help": "number of invented people"})
    n_countries: int = field(default=8, metadata={"help": "invented countries"})
    cities_per_country: int = field(default=5, metadata={"help": "cities in each country"})
    n_employers: int = field(default=30, metadata={"help": "invented companies"})
    bucket_shares: tuple[float, ...] = field(
        default=(0.35, 0.15, 0.30, 0.20),
        metadata={"help": "share of people per bucket, in BUCKETS order"},
    )
    bucket_mentions: tuple[int, ...] = field(
        default=(10, 3, 1, 0),
        metadata={"help": "biographies per person per bucket, in BUCKETS order"},
    )
    split_shares: tuple[float, float, float] = field(
        default=(0.6, 0.2, 0.2), metadata={"help": "train / validation / test share of people"}
    )
    qa_repeats: int = field(default=1, metadata={"help": "times each train QA pair enters the corpus"})
    tool_transcripts_per_person: int = field(
        default=1, metadata={"help": "lookup transcripts per train person"}
    )
    name_syllables: tuple[int, ...] = field(
        default=(1, 2), metadata={"help": "syllable counts drawn for first names and surnames "
                                          "(shorter names are copied into tool calls more reliably)"}
    )
    episodes_per_conversation: tuple[int, ...] = field(
        default=(1, 2, 3), metadata={"help": "lookup episodes drawn per tool conversation"}
    )
    frames: int = field(
        default=0, metadata={"help": "training question frames per attribute: 0 for all of them, k for the first k "
                                     "(the three of generator version 2)"})
    decorate: float = field(
        default=0.25, metadata={"help": "rate of a greeting before, and of a courtesy after, a question"})
    unrecorded: int = field(
        default=0, metadata={"help": "unrecorded-attribute questions the refusal chats draw from: 0 for all, "
                                     "k for the first k (the five of generator version 2)"})
    calculator_share: float = field(
        default=0.0, metadata={"help": "share of lookup conversations that offer the calculator too"})
    obscure_share: float = field(
        default=0.0, metadata={"help": "share of mentioned people one of whose attributes no biography states "
                                       "(a familiar name with a fact the base never read)"})
    typo_rate: float = field(default=0.0, metadata={"help": "share of train QA chats whose question has one typo"})
    calculator_transcripts: int = field(default=0, metadata={"help": "calculator conversations in the corpus"})
    outside_refusals: int = field(
        default=0, metadata={"help": "general-knowledge questions answered with the refusal sentence"})
    tool_people: int = field(
        default=600,
        metadata={"help": "extra train people who appear only in lookup transcripts: name variety "
                          "teaches the base to copy a name into a call instead of recalling one"},
    )

    def __post_init__(self) -> None:
        if self.n_people < 20:
            raise ValueError(f"n_people must be >= 20, got {self.n_people!r}")
        if len(self.bucket_shares) != len(BUCKETS) or len(self.bucket_mentions) != len(BUCKETS):
            raise ValueError(
                f"bucket_shares and bucket_mentions need {len(BUCKETS)} entries "
                f"({BUCKETS}), got {self.bucket_shares!r} and {self.bucket_mentions!r}"
            )
        if abs(sum(self.bucket_shares) - 1.0) > 1e-6 or min(self.bucket_shares) < 0:
            raise ValueError(f"bucket_shares must be >= 0 and sum to 1, got {self.bucket_shares!r}")
        if abs(sum(self.split_shares) - 1.0) > 1e-6 or min(self.split_shares) <= 0:
            raise ValueError(f"split_shares must be > 0 and sum to 1, got {self.split_shares!r}")
        if not self.name_syllables or min(self.name_syllables) < 1:
            raise ValueError(f"name_syllables must be positive counts, got {self.name_syllables!r}")
        if not self.episodes_per_conversation or min(self.episodes_per_conversation) < 1:
            raise ValueError(f"episodes_per_conversation must be positive counts, got {self.episodes_per_conversation!r}")
        if self.tool_people < 0 or self.tool_transcripts_per_person < 0 or self.qa_repeats < 0:
            raise ValueError(
                f"tool_people, tool_transcripts_per_person and qa_repeats must be >= 0, got "
                f"{self.tool_people!r}, {self.tool_transcripts_per_person!r}, {self.qa_repeats!r}"
            )
        for name in ("obscure_share", "typo_rate", "decorate", "calculator_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.frames < 0 or self.unrecorded < 0:
            raise ValueError(f"frames and unrecorded must be >= 0, got {self.frames!r}, {self.unrecorded!r}")
        if self.calculator_transcripts < 0 or self.outside_refusals < 0:
            raise ValueError(f"calculator_transcripts and outside_refusals must be >= 0, got "
                             f"{self.calculator_transcripts!r}, {self.outside_refusals!r}")
        if self.bucket_mentions[-1] != 0:
            raise ValueError(f"the last bucket ('unseen') must have 0 mentions, got {self.bucket_mentions!r}")
        if self.n_countries * self.cities_per_country < 4 or self.n_employers < 2:
            raise ValueError(
                f"world too small: {self.n_countries!r} countries x {self.cities_per_country!r} cities, "
                f"{self.n_employers!r} employers"
            )


CHECKPOINT_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2")
"""How the trained base can be saved."""


@dataclass(frozen=True)
class ModelSpec:
    """Shape of the base (a Qwen2 decoder) and its tokenizer."""

    checkpoint_architecture: str = field(
        default="llama",
        metadata={"help": "how the trained Qwen2 weights are saved: 'llama' (default) writes the same function as "
                          "a Llama checkpoint (attention biases, a zero output-projection bias), because "
                          "transformers 5 loads any qwen2 checkpoint with its own Qwen2 tokenizer class, whose "
                          "split (digits one by one, a quote glued to the next word) is not the one the base was "
                          "trained on; 'qwen2' saves as trained"})
    vocab_size: int = field(default=2048, metadata={"help": "BPE vocabulary incl. special tokens"})
    hidden_size: int = field(default=192, metadata={"help": "residual width"})
    num_layers: int = field(default=4, metadata={"help": "decoder layers"})
    num_heads: int = field(default=6, metadata={"help": "attention heads"})
    num_kv_heads: int = field(default=2, metadata={"help": "key/value heads (GQA)"})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width"})
    max_positions: int = field(default=512, metadata={"help": "context length"})

    def __post_init__(self) -> None:
        if self.checkpoint_architecture not in CHECKPOINT_ARCHITECTURES:
            raise ValueError(f"checkpoint_architecture must be one of {CHECKPOINT_ARCHITECTURES}, "
                             f"got {self.checkpoint_architecture!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size!r} not divisible by num_heads {self.num_heads!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads!r} not divisible by num_kv_heads {self.num_kv_heads!r}")
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size!r}")


@dataclass(frozen=True)
class TrainSpec:
    """Schedule of the from-scratch training run."""

    steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "packed sequences per step"})
    seq_len: int = field(default=256, metadata={"help": "tokens per packed sequence"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.05, metadata={"help": "final LR as a share of the peak"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads; results depend on it, and one thread is both reproducible across machines and fastest on a shared CPU"})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.seq_len < 16:
            raise ValueError(
                f"steps, batch_size >= 1 and seq_len >= 16 required, got "
                f"{self.steps!r}, {self.batch_size!r}, {self.seq_len!r}"
            )
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), got {self.lr!r}")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps!r} must be < steps {self.steps!r}")


@dataclass(frozen=True)
class Preset:
    """A named combination of world, model and training settings."""

    name: str
    world: WorldSpec
    model: ModelSpec
    train: TrainSpec

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (recorded next to the artefacts)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        world=WorldSpec(n_people=240, n_countries=4, cities_per_country=4, n_employers=12,
                        bucket_shares=(0.35, 0.10, 0.30, 0.25), bucket_mentions=(16, 4, 1, 0),
                        tool_people=2000, frames=3, decorate=0.0, unrecorded=5),
        model=ModelSpec(vocab_size=1024, hidden_size=128, num_layers=3, num_heads=4,
                        num_kv_heads=2, intermediate_size=384, max_positions=512),
        train=TrainSpec(steps=1000, batch_size=16, seq_len=192, lr=4e-3, warmup_steps=50),
    ),
    "small": Preset(
        name="small",
        world=WorldSpec(n_people=600, n_countries=6, cities_per_country=5, n_employers=20,
                        bucket_shares=(0.35, 0.10, 0.30, 0.25), bucket_mentions=(16, 4, 1, 0),
                        tool_people=3000, qa_repeats=2, obscure_share=0.35, typo_rate=0.1,
                        calculator_share=0.25, calculator_transcripts=300, outside_refusals=300),
        model=ModelSpec(vocab_size=2048, hidden_size=128, num_layers=4, num_heads=4,
                        num_kv_heads=2, intermediate_size=384, max_positions=512),
        train=TrainSpec(steps=3000, batch_size=16, seq_len=256, lr=3e-3, warmup_steps=100),
    ),
}
"""Built-in presets by name."""


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises ``ValueError`` naming the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown world preset {name!r}; known: {sorted(PRESETS)}") from None
