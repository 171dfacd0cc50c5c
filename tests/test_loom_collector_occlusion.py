"""A collection that records the occlusion signal: each row's value is what
inference's pass 1 reads for that question (the prompt's words found where
the collector rendered them), batched or not; the other signals are those of
a collection without it; and a Doubter trained to read it needs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from collector_fixtures import (  # noqa: F401 - model_dir, pipe, dataset_dir, dataset, reference are fixtures
    MAX_NEW_TOKENS, dataset, dataset_dir, model_dir, pipe, reference,
)
from meta_spider.loom.collect.activations import ActivationDataset, ActivationFormatError
from meta_spider.loom.collect.collector import ActivationDatasetCollector, render_qa_prompt
from meta_spider.loom.datasets import JsonlDataset
from meta_spider.wrapper import MetaSpiderPipeline
from meta_spider.wrapper.signals import OCCLUSION_SIGNALS, SIGNALS

SPLITS = ["train", "validation", "test"]


@pytest.fixture(scope="module")
def with_occlusion(pipe: MetaSpiderPipeline, dataset: JsonlDataset,
                   tmp_path_factory: pytest.TempPathFactory) -> ActivationDataset:
    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, batch_size=4,
                                           show_progress=False, signals=SIGNALS + OCCLUSION_SIGNALS)
    return collector.collect_dataset(dataset, SPLITS, output_dir=tmp_path_factory.mktemp("occlusion"))


def test_each_row_holds_what_pass_1_reads_for_its_question(pipe, dataset, reference, with_occlusion) -> None:
    assert with_occlusion.recorded_signals == SIGNALS + OCCLUSION_SIGNALS
    # The other signals are those of a collection without it (batch 4 against batch 1: float rounding).
    torch.testing.assert_close(with_occlusion.signals(SIGNALS), reference.signals(SIGNALS), rtol=1e-4, atol=1e-4)
    collected = with_occlusion.signals(OCCLUSION_SIGNALS)[:, 0].numpy()
    assert np.all(collected < 0) and len(set(np.round(collected, 4))) > 1  # a name's later tokens: real values
    # Inference's pass 1 on each question, with a Doubter reading the signal, finds the same words and value.
    pipe.attach(pipe.new_doubter(signals=list(OCCLUSION_SIGNALS), encoder_dim=16, ca_bottleneck_dim=16,
                                 ca_num_heads=2))
    try:
        examples = [example for split in SPLITS for example in dataset.split(split)]
        for index, example in enumerate(examples):
            prompt = dataset.prompt(example)
            text = render_qa_prompt(pipe, prompt)
            ids = pipe.encode(text)
            assert ids[0].tolist() == with_occlusion.prompt_ids(index)
            pass1 = pipe.read_ids(ids, max_draft_tokens=MAX_NEW_TOKENS,
                                  words=pipe.question_words(text, example.question))
            assert float(pass1.signals[0, 0]) == pytest.approx(float(collected[index]), abs=1e-3)
    finally:
        pipe.detach()


def test_a_collection_without_it_names_the_option(pipe, reference) -> None:
    with pytest.raises(ActivationFormatError, match="--occlusion-signals"):
        reference.signals(OCCLUSION_SIGNALS)
    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, show_progress=False,
                                           signals=SIGNALS + OCCLUSION_SIGNALS)
    text = pipe.render("Where was Ada born?")
    with pytest.raises(ValueError, match="user's words"):
        collector.read_batch([text])
    with pytest.raises(ValueError, match="not in the prompt"):
        collector.read_batch([text], ["Where was Grace born?"])
    assert collector.read_example(text, "Where was Ada born?").signals[-1] < 0
