"""Pass 1 for activation datasets: the reads ``metaloom collect`` stores.

:class:`CollectionReads` is a part of
:class:`~meta_spider.wrapper.pipeline.MetaSpiderPipeline` (it reads the
pipeline's base, decoder, tokenizer and config; it holds no state of its
own): last-token states for batches of prompts, both read positions with the
draft and its log-probs (one prompt bit for bit as inference reads it,
several batched by :mod:`batched`), the occlusion signal's forwards and the
base's mean next-token distribution. No Doubter takes part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from meta_spider.wrapper.batched import left_pad, read_drafts, reference_logprobs
from meta_spider.wrapper.collector import ActivationCollector, last_token_positions, padded_position_ids
from meta_spider.wrapper.passes import ReadStates
from meta_spider.wrapper.signals import Occlusion

if TYPE_CHECKING:
    from torch import nn

    from meta_spider.wrapper.config import MetaSpiderConfig
    from meta_spider.wrapper.layers import DecoderStructure
    from meta_spider.wrapper.passes import TwoPassDecoder
    from meta_spider.wrapper.pipeline import PromptLike

__all__ = ["CollectionReads"]


class CollectionReads:
    """The pipeline's reads for activation datasets (see the module
    docstring); besides the attributes below it calls the pipeline's
    ``render``, ``encode`` and ``question_words``."""

    model: "nn.Module"
    config: "MetaSpiderConfig"
    structure: "DecoderStructure"
    decoder: "TwoPassDecoder"
    num_layers: int
    device: torch.device
    pad_token_id: int

    def read_states(self, prompts: Sequence[PromptLike], *, layers: Sequence[int] | None = None) -> torch.Tensor:
        """Last-prompt-token states ``[B, L, d]`` at ``layers`` (default: the
        config's target layers) for a left-padded batch of prompts."""
        layers = tuple(layers) if layers is not None else self.config.resolve(self.num_layers)[0]
        input_ids, mask = left_pad([self.encode(self.render(p))[0] for p in prompts], self.pad_token_id)
        return self.read_states_ids(input_ids, mask, layers=layers)

    def collect_states(self, prompt: PromptLike, *, layers: Sequence[int] | None = None,
                       max_draft_tokens: int = 64) -> ReadStates:
        """Both read positions of one prompt in one pass, no Doubter needed
        (for activation datasets): states at the last prompt token and at the
        end of the greedy draft, plus the draft's token ids."""
        layers = tuple(layers) if layers is not None else self.config.resolve(self.num_layers)[0]
        read = self.decoder.read_states(self.encode(self.render(prompt)), layers, max_draft_tokens=max_draft_tokens)
        read.cache = None  # not needed by a collector; free the memory now
        return read

    def collect_states_ids(self, prompt_ids: Sequence[torch.Tensor], *, layers: Sequence[int] | None = None,
                           max_draft_tokens: int = 64) -> list[ReadStates]:
        """Pass 1 for activation datasets on several prompts (``[T]`` ids
        each, rendered and encoded): per prompt a :class:`ReadStates` with the
        states ``[1, L, d]`` at ``layers`` (default: the config's target
        layers) at the last prompt token and at the end of the greedy draft
        (at most ``max_draft_tokens``), the draft's ids, the token log-probs
        of prompt and draft, the first draft token's highest probability and
        the draft's mean log-prob; no cache. One prompt is read by the very
        code of inference's pass 1 (bit for bit); several are decoded as one
        left-padded batch (:func:`~meta_spider.wrapper.batched.read_drafts`),
        faster and equal up to float rounding."""
        layers = tuple(layers) if layers is not None else self.config.resolve(self.num_layers)[0]
        if not prompt_ids:
            raise ValueError("prompt_ids is empty: give at least one prompt")
        if len(prompt_ids) > 1:
            return read_drafts(self.decoder, prompt_ids, layers, max_draft_tokens=max_draft_tokens,
                               pad_token_id=self.pad_token_id)
        if max_draft_tokens < 1:
            raise ValueError(f"collecting states drafts: max_draft_tokens must be >= 1, got {max_draft_tokens!r}")
        read = self.decoder.read_states(prompt_ids[0].unsqueeze(0), layers, max_draft_tokens=max_draft_tokens,
                                        logprobs=True)
        read.cache = None  # not needed by a collector; free the memory now
        return [read]

    def collect_occlusions(self, prompt_texts: Sequence[str], questions: Sequence[str],
                           prompt_ids: Sequence[Sequence[int]], drafts: Sequence[Sequence[int]]) -> list[Occlusion]:
        """What ``occluded_name_logprob`` reads for collected prompts (rendered
        ``prompt_texts``, their ids, the user's ``questions`` in them and pass
        1's ``drafts``): each question's words and the draft's log-prob
        without each, the forwards batched across prompts
        (:meth:`TwoPassDecoder.occluded_draft_logprobs`)."""
        words = [self.question_words(text, question) for text, question in zip(prompt_texts, questions)]
        sums = self.decoder.occluded_draft_logprobs([list(row) for row in prompt_ids], drafts, words,
                                                    pad_token_id=self.pad_token_id)
        return [Occlusion(word, total) for word, total in zip(words, sums)]

    def reference_logprobs(self, prompt_ids: Sequence[torch.Tensor]) -> np.ndarray:
        """``log p_ref`` ``[V]`` (float64) over prompts (``[T]`` ids each):
        the base's mean next-token distribution at every position that
        predicts a prompt token, what the PMI signals compare against
        (:func:`~meta_spider.wrapper.batched.reference_logprobs`)."""
        if not prompt_ids:
            raise ValueError("prompt_ids is empty: give at least one prompt")
        return reference_logprobs(self.decoder, prompt_ids, pad_token_id=self.pad_token_id)

    def read_states_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                        layers: Sequence[int]) -> torch.Tensor:
        """States at each row's last real token, left or right padding."""
        collector = ActivationCollector(self.structure.layers, layers)
        kwargs: dict[str, Any] = {"input_ids": input_ids.to(self.device),
                                  "attention_mask": attention_mask.to(self.device), "use_cache": False}
        if not bool(attention_mask[:, 0].all()):
            # Left padding: positions must count real tokens only.
            kwargs["position_ids"] = padded_position_ids(attention_mask).to(self.device)
        with torch.no_grad(), collector.recording(positions=last_token_positions(attention_mask)) as record:
            self.model(**kwargs)
        return record.states()
