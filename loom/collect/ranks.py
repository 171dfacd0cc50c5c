"""Data-parallel collection: which shards a rank collects, and the merge.

Under ``torchrun`` or ``accelerate launch`` (the ``RANK`` / ``WORLD_SIZE``
environment), rank ``r`` of ``W`` collects the shards whose number ``k``
(examples ``k * shard_size`` onward) has ``k % W == r`` into its own folder
``<output>.rank-<r>-of-<W>/``, an activation collection like any other,
resumed on its own after a kill. When every rank's folder is complete, rank
0 merges them: shards in number order, ``examples.jsonl`` in index order,
then ``collection.json`` (the commit point), exactly what one process writes;
the rank folders are removed after the commit. No process group is needed:
the ranks meet through the run directory's files.
This module knows nothing about models; the collector reads the questions.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_spider.loom.collect.activations import (
    COLLECTION_FILE,
    EXAMPLES_FILE,
    ActivationFormatError,
    collection_is_complete,
    example_lines_by_index,
    read_collection_json,
    shard_name,
    write_collection_json,
    write_example_lines,
)

__all__ = ["HEADER_KEYS", "Ranks", "collect_on_ranks", "merge_rank_folders", "rank_folder", "rank_items",
           "wait_for_ranks"]

HEADER_KEYS = ("model", "target_layers", "signals", "max_new_tokens", "dataset", "shard_size", "total_examples",
               "questions_sha256", "reference")
"""The collection.json fields a resumed collection, every rank's folder and
the merged collection share (``reference`` only when the signals read p_ref)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the collecting processes."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {self.rank!r} of {self.world_size!r}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Ranks":
        """``RANK`` and ``WORLD_SIZE`` as torchrun and accelerate set them (one process without them)."""
        environ = os.environ if environ is None else environ
        try:
            return cls(int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1")))
        except ValueError as error:
            raise ValueError(f"RANK={environ.get('RANK')!r} / WORLD_SIZE={environ.get('WORLD_SIZE')!r} are not a "
                             f"rank and a process count: {error}") from None

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def owns(self, shard_number: int) -> bool:
        return shard_number % self.world_size == self.rank


def rank_folder(output_dir: Path, ranks: Ranks, rank: int | None = None) -> Path:
    """Where rank ``rank`` (default: this one) collects its shards."""
    chosen = ranks.rank if rank is None else rank
    return output_dir.parent / f"{output_dir.name}.rank-{chosen}-of-{ranks.world_size}"


def wait_for_ranks(output_dir: Path, ranks: Ranks, *, poll_seconds: float = 0.5,
                   on_wait: Callable[[list[int]], None] | None = None) -> None:
    """Return once every rank's folder holds a complete collection (rank 0 calls this)."""
    told = False
    while True:
        waiting = []
        for rank in range(ranks.world_size):
            if not collection_is_complete(rank_folder(output_dir, ranks, rank)):
                waiting.append(rank)
        if not waiting:
            return
        if on_wait is not None and not told:
            on_wait(waiting)
            told = True
        time.sleep(poll_seconds)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the rank folder keeps its file until the merge is committed
    except OSError:
        shutil.copy2(source, target)


def merge_rank_folders(output_dir: Path, ranks: Ranks, header: Mapping[str, Any],
                       ordered: Callable[[Mapping[str, Any]], dict[str, Any]],
                       is_collection_file: Callable[[str], bool]) -> None:
    """Merge the complete rank folders into ``output_dir`` and remove them.

    ``header`` is the whole collection's (what one process would record);
    ``ordered`` puts collection.json's keys in the format's order;
    ``is_collection_file`` tells merge debris from foreign files. A merge
    killed before its commit leaves ``output_dir`` without collection.json
    and the rank folders intact: the next run merges again.
    """
    folders = [rank_folder(output_dir, ranks, rank) for rank in range(ranks.world_size)]
    infos = [read_collection_json(folder) for folder in folders]
    for folder, info in zip(folders, infos):
        for key in HEADER_KEYS:
            if info.get(key) != header.get(key):
                raise ActivationFormatError(folder, f"records {key} {info.get(key)!r:.80}, the collection "
                                            f"{header.get(key)!r:.80}", "delete the rank folders and collect again")
    shard_size, total = int(header["shard_size"]), int(header["total_examples"])
    expected = [shard_name(number) for number in range((total + shard_size - 1) // shard_size)]
    owner = {name: folder for folder, info in zip(folders, infos) for name in info["shards"]}
    if sorted(owner) != expected:
        raise ActivationFormatError(output_dir, f"the rank folders hold shards {sorted(owner)}, not {expected}",
                                    "delete the rank folders and collect again")
    lines: dict[int, bytes] = {}
    for folder in folders:
        lines.update(example_lines_by_index(folder / EXAMPLES_FILE))
    if sorted(lines) != list(range(total)):
        raise ActivationFormatError(output_dir, f"the rank folders hold {len(lines)} examples, not indices "
                                    f"0..{total - 1}", "delete the rank folders and collect again")
    output_dir.mkdir(parents=True, exist_ok=True)
    strangers = sorted(path.name for path in output_dir.iterdir() if not is_collection_file(path.name))
    if strangers or (output_dir / COLLECTION_FILE).exists():
        raise ActivationFormatError(output_dir, f"holds files that are not a merge in progress ({strangers[:5]})",
                                    "collect into a new or empty folder")
    for stale in output_dir.iterdir():  # debris of a merge killed before its commit
        stale.unlink()
    for name in expected:
        _link_or_copy(owner[name] / name, output_dir / name)
    if "reference" in header:  # every rank computed the same p_ref (the header's hash says so)
        from meta_spider.loom.collect.reference import REFERENCE_FILE

        _link_or_copy(folders[0] / REFERENCE_FILE, output_dir / REFERENCE_FILE)
    write_example_lines(output_dir, (lines[index] for index in range(total)))
    write_collection_json(output_dir, ordered({**infos[0], **dict(header), "num_examples": total, "shards": expected,
                                               "complete": True}))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def rank_items(items: Sequence[Any], ranks: Ranks, shard_size: int, index: Callable[[Any], int]) -> list[Any]:
    """The items of the shards this rank owns, in order."""
    return [item for item in items if ranks.owns(index(item) // shard_size)]


def collect_on_ranks(output_dir: Path, header: Mapping[str, Any], ranks: Ranks, collect_part: Callable[[Path], None],
                     *, ordered: Callable[[Mapping[str, Any]], dict[str, Any]],
                     is_collection_file: Callable[[str], bool], console: Any = None) -> Path:
    """This rank's share of a collection: ``collect_part(folder)`` fills (or resumes) the rank's folder;
    rank 0 then waits for the others and merges. Returns the folder to open: the merged collection on
    rank 0 (also when an earlier run merged it already), the rank's own folder elsewhere."""
    if (output_dir / COLLECTION_FILE).is_file():
        info = read_collection_json(output_dir)
        if info["complete"] and all(info.get(key) == header.get(key) for key in HEADER_KEYS):
            return output_dir  # merged by an earlier run: nothing to do
        raise ActivationFormatError(output_dir, "holds a collection that one process started (or another one)",
                                    "finish it with one process (the same command without torchrun), "
                                    "or pass --force to start over")
    own = rank_folder(output_dir, ranks)
    own.mkdir(parents=True, exist_ok=True)
    collect_part(own)
    if ranks.rank != 0:
        return own

    def waiting(left: list[int]) -> None:
        if console is not None:
            console.print(f"rank 0: waiting for ranks {left} to finish their shards")

    wait_for_ranks(output_dir, ranks, on_wait=waiting)
    merge_rank_folders(output_dir, ranks, header, ordered, is_collection_file)
    return output_dir
