"""Builders for the GGUF export tests: a tiny byte-level BPE tokenizer and tiny Qwen2 / Llama bases.

Everything is made in-process and seeded: a few hundred template sentences,
a byte-level BPE trained on them with the `tokenizers` library (GPT-2 or
Qwen2 splitting), ChatML special tokens and chat template, and a causal LM
with random weights drawn at a large init scale so next-token top-1 is
decisive (small-init random models have near-flat logits whose top-1 flips
under f16 rounding, which would test the noise, not the exporter). Nothing
here knows about the exporter.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
# Not special: matched verbatim in text by both tokenizers (tool-call markup).
USER_TOKENS = ["<tool_call>", "</tool_call>"]
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_NAMES = ["Ada", "Bram", "Cleo", "Dario", "Elin", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lev"]
_CITIES = ["Kuba", "Marrow", "Tessel", "Ostrava", "Lindholm", "Quarry Bay", "Vell", "Sarn"]
_JOBS = ["baker", "pilot", "chemist", "teacher", "sculptor", "engineer", "farmer", "judge"]
_YEARS = [str(year) for year in range(1931, 1999, 3)]


def training_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic biography-like sentences with names, cities, numbers and punctuation."""
    rng = random.Random(seed)
    templates = [
        "{n} was born in {c} in {y}.",
        "{n} worked as a {j} in {c}.",
        "Where was {n} born? {n} was born in {c}.",
        "In {y}, {n} moved to {c} and became a {j}!",
        "{n}'s brother, a {j}, didn't like {c}; he'll leave in {y}.",
        "Q: What does {n} do?\nA: {n} is a {j}.",
        "  The {j} from {c} (born {y}) is called {n}.  ",
    ]
    sentences = []
    for _ in range(n):
        template = rng.choice(templates)
        sentences.append(template.format(n=rng.choice(_NAMES), c=rng.choice(_CITIES), j=rng.choice(_JOBS), y=rng.choice(_YEARS)))
    return sentences


def build_tokenizer(split: str = "gpt2", vocab_size: int = 400, add_bos: bool = False) -> Any:
    """A transformers fast tokenizer: byte-level BPE trained on `training_sentences`.

    `split` is 'gpt2' (ByteLevel with its own regex), 'gpt2-digits' (the
    digits split off one by one first, as StarCoder's tokenizer does) or
    'qwen2' (Split regex then ByteLevel without regex). `add_bos` installs a post-processor that
    prepends <|endoftext|> as bos, as Llama-style tokenizers do.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    if split == "gpt2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif split == "gpt2-digits":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    elif split == "qwen2":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        raise ValueError(f"split must be 'gpt2', 'gpt2-digits' or 'qwen2', got {split!r}")
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_sentences(), trainer=trainer)
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in USER_TOKENS])
    bos = "<|endoftext|>"
    if add_bos:
        bos_id = tokenizer.token_to_id(bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token="<|im_end|>", pad_token="<|pad|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_model(arch: str, vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4,
                kv_heads: int = 2, intermediate: int = 128, tie: bool = False, seed: int = 0,
                init_std: float = 0.15, attention_bias: bool = False, **config_overrides: Any) -> Any:
    """A random-weight Qwen2ForCausalLM or LlamaForCausalLM; `config_overrides` go to the config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=intermediate, max_position_embeddings=256,
        tie_word_embeddings=tie, initializer_range=init_std, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    common.update(config_overrides)
    torch.manual_seed(seed)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(attention_bias=attention_bias, **common))
    else:
        raise ValueError(f"arch must be 'qwen2' or 'llama', got {arch!r}")
    with torch.no_grad():
        # Random norms and biases too, so a wrongly mapped or permuted one shows.
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * torch.randn_like(param))
            elif name.endswith(".bias"):
                param.copy_(0.2 * torch.randn_like(param))
    return model.eval()


def train_briefly(model: Any, tokenizer: Any, steps: int = 30, lr: float = 3e-3, seed: int = 0) -> Any:
    """A few AdamW steps of next-token loss on `training_sentences`, so top-1 is decisive.

    Trained distributions put the top token well ahead of the second on
    most contexts; random ones leave many near-ties that f16 rounding flips.
    """
    import torch

    torch.manual_seed(seed)
    batch = tokenizer(training_sentences(n=64, seed=seed + 7), padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def save_base(folder: Path, arch: str, split: str, add_bos: bool = False, train_steps: int = 30,
              **model_kwargs: Any) -> Path:
    """Build tokenizer + model (briefly trained), `save_pretrained` both into `folder`."""
    tokenizer = build_tokenizer(split=split, add_bos=add_bos)
    model = build_model(arch, vocab_size=len(tokenizer), **model_kwargs)
    if train_steps:
        train_briefly(model, tokenizer, steps=train_steps)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def parity_prompts(tokenizer: Any, n: int = 200, seed: int = 1) -> list[list[int]]:
    """`n` token-id prompts: fresh sentences (seed differs from training) and ChatML turns."""
    rng = random.Random(seed)
    sentences = training_sentences(n=n, seed=seed)
    prompts = []
    for index, sentence in enumerate(sentences):
        if index % 3 == 0:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": sentence}], tokenize=False, add_generation_prompt=True
            )
        else:
            words = sentence.split(" ")
            text = " ".join(words[: rng.randint(2, max(2, len(words)))])
        ids = tokenizer.encode(text, add_special_tokens=True)
        prompts.append(ids[:48])
    return prompts
