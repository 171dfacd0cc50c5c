"""A collection that records the PMI signal: ``p_ref`` computed over the
train prompts and kept beside the shards under the hash collection.json
records, the signal computed with it for every row, a resume that refuses
another ``p_ref``, and training that copies it into the Doubter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from collector_fixtures import (  # noqa: F401 - model_dir, pipe, dataset_dir, dataset, reference are fixtures
    MAX_NEW_TOKENS, dataset, dataset_dir, folder_bytes, model_dir, pipe, reference,
)
from meta_spider.loom.collect.activations import COLLECTION_FILE, ActivationDataset, ActivationFormatError
from meta_spider.loom.collect.collector import ActivationDatasetCollector, CollectionMismatchError
from meta_spider.loom.collect.reference import REFERENCE_FILE
from meta_spider.loom.datasets import JsonlDataset
from meta_spider.wrapper import MetaSpiderPipeline
from meta_spider.wrapper.signals import PMI_SIGNALS, SIGNALS

SPLITS = ["train", "validation", "test"]


def _collector(pipe: MetaSpiderPipeline, **options) -> ActivationDatasetCollector:
    return ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False,
                                      signals=SIGNALS + PMI_SIGNALS, **options)


@pytest.fixture(scope="module")
def with_pmi(pipe: MetaSpiderPipeline, dataset: JsonlDataset, tmp_path_factory: pytest.TempPathFactory) -> ActivationDataset:
    return _collector(pipe).collect_dataset(dataset, SPLITS, output_dir=tmp_path_factory.mktemp("pmi"))


def test_the_pmi_signal_is_computed_with_the_train_prompts_reference(pipe, dataset, reference, with_pmi) -> None:
    assert with_pmi.recorded_signals == SIGNALS + PMI_SIGNALS
    record = with_pmi.info["reference"]
    assert record["split"] == "train" and record["prompts"] == len(dataset.split("train"))
    train_rows = [torch.tensor(with_pmi.prompt_ids(i)) for i in with_pmi.split_indices("train")]
    log_reference = with_pmi.log_reference()
    assert log_reference.dtype == torch.float32
    np.testing.assert_array_equal(log_reference.numpy(), pipe.reference_logprobs(train_rows).astype(np.float32))
    # The other signals are those of a collection without the PMI, bit for bit.
    torch.testing.assert_close(with_pmi.signals(SIGNALS), reference.signals(SIGNALS), rtol=0, atol=0)
    assert "reference" not in reference.info and not (reference.folder / REFERENCE_FILE).exists()
    # Each row's PMI: the mean of the four highest log p(t | context) - log p_ref(t) of its prompt.
    for index in range(len(with_pmi)):
        ids = with_pmi.prompt_ids(index)
        read = pipe.collect_states_ids([torch.tensor(ids)], max_draft_tokens=MAX_NEW_TOKENS)[0]
        pmi = read.prompt_logprobs - log_reference.double().numpy()[ids[1:]]
        assert float(with_pmi.signals(PMI_SIGNALS)[index, 0]) == pytest.approx(np.sort(pmi)[-4:].mean(), abs=1e-5)


def test_a_resume_refuses_another_reference(pipe, dataset, with_pmi, tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    shutil.copytree(with_pmi.folder, folder)
    info = json.loads((folder / COLLECTION_FILE).read_text())
    info.update(num_examples=4, shards=info["shards"][:1], complete=False)
    (folder / COLLECTION_FILE).write_text(json.dumps(info, indent=2) + "\n")

    class Shifted(ActivationDatasetCollector):
        def reference_distribution(self, items):
            log_reference, record = super().reference_distribution(items)
            from meta_spider.loom.collect.reference import reference_record

            shifted = np.log(np.roll(np.exp(log_reference.astype(np.float64)), 1)).astype(np.float32)
            return shifted, reference_record(shifted, record["split"], record["prompts"])

    shifted = Shifted(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False,
                      signals=SIGNALS + PMI_SIGNALS)
    with pytest.raises(CollectionMismatchError, match="reference"):
        shifted.collect_dataset(dataset, SPLITS, output_dir=folder)
    # Without the PMI signals it is another collection too.
    with pytest.raises(CollectionMismatchError, match="signals"):
        ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4,
                                   show_progress=False).collect_dataset(dataset, SPLITS, output_dir=folder)
    # The same p_ref resumes to the bytes of the uninterrupted run.
    _collector(pipe).collect_dataset(dataset, SPLITS, output_dir=folder)
    assert folder_bytes(folder) == folder_bytes(with_pmi.folder)

    # A reference file that does not hold what collection.json records is refused on read.
    (folder / REFERENCE_FILE).write_bytes((with_pmi.folder / REFERENCE_FILE).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ActivationFormatError, match="another hash"):
        ActivationDataset.load(folder).log_reference()
    (folder / REFERENCE_FILE).unlink()
    with pytest.raises(ActivationFormatError, match="missing"):
        ActivationDataset.load(folder).log_reference()


def test_training_copies_the_reference_into_the_doubter(pipe, reference, with_pmi, tmp_path: Path) -> None:
    from meta_spider.loom.train.config import TrainerConfig
    from meta_spider.loom.train.trainer import Trainer, TrainerError

    torch.manual_seed(0)
    config = TrainerConfig(epochs=1, batch_size=4, early_stopping_metric="val_loss")
    doubter = pipe.new_doubter(signals=["draft_logprob_mean", "prompt_pmi_top4"], encoder_dim=16,
                               ca_bottleneck_dim=16, ca_num_heads=2)
    Trainer(doubter, pipe, config).fit(with_pmi)
    torch.testing.assert_close(doubter.log_reference, with_pmi.log_reference(), rtol=0, atol=0)
    loaded = type(doubter).from_checkpoint(doubter.save_checkpoint(tmp_path / "ckpt"))
    torch.testing.assert_close(loaded.log_reference, with_pmi.log_reference(), rtol=0, atol=0)
    # A collection made without the PMI signals cannot train it.
    fresh = pipe.new_doubter(signals=["prompt_pmi_top4"], encoder_dim=16, ca_bottleneck_dim=16, ca_num_heads=2)
    with pytest.raises(TrainerError, match=r"not \['prompt_pmi_top4'\].*metaloom collect --pmi-signals"):
        Trainer(fresh, pipe, config).fit(reference)


def test_a_given_reference_is_the_one_the_signal_reads(pipe, dataset, with_pmi, tmp_path: Path) -> None:
    """New questions for a trained Doubter are collected against its own p_ref
    (``metaloom collect --pmi-reference CHECKPOINT``), not one computed over
    their train prompts: the Doubter reads its PMI against the distribution it
    was trained with."""
    trained = with_pmi.log_reference().numpy()
    given = np.log(np.roll(np.exp(trained.astype(np.float64)), 3)).astype(np.float32)  # not what these prompts give
    collected = _collector(pipe, log_reference=given).collect_dataset(dataset, ["test"], output_dir=tmp_path / "new")
    assert collected.info["reference"]["split"] == "given" and collected.info["reference"]["prompts"] == 0
    np.testing.assert_array_equal(collected.log_reference().numpy(), given)
    for index in range(len(collected)):
        ids = collected.prompt_ids(index)
        read = pipe.collect_states_ids([torch.tensor(ids)], max_draft_tokens=MAX_NEW_TOKENS)[0]
        pmi = read.prompt_logprobs - given.astype(np.float64)[ids[1:]]
        assert float(collected.signals(PMI_SIGNALS)[index, 0]) == pytest.approx(np.sort(pmi)[-4:].mean(), abs=1e-5)
    with pytest.raises(ValueError, match="one finite log-probability per token"):
        _collector(pipe, log_reference=given[:-1])
    with pytest.raises(ValueError, match="one finite log-probability per token"):
        _collector(pipe, log_reference=np.full_like(given, np.nan))
