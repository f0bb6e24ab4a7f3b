"""Per-image outcomes: the vector behind accuracy, identical however the split is sharded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.data import load_splits
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.training.distributed import DistContext
from albsnn_compress.training.outcomes import accuracy_percent, correct_answers
from albsnn_compress.training.trainer import evaluate


@dataclass(frozen=True)
class OneRankOfTwo(DistContext):
    """A rank of a two-process job whose all-reduce is left to the test (it sums the ranks itself)."""

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values


def test_the_vector_holds_each_images_answer_and_its_mean_is_the_accuracy(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    val = load_splits("digits", None)["val"]
    correct = correct_answers(model, val, batch_size=50)
    assert correct.dtype == torch.bool and correct.shape == (len(val),)
    images, labels = next(iter(BatchLoader(val, 7)))
    with torch.no_grad():
        expected = model(images[:7]).argmax(dim=1) == labels[:7]
    assert torch.equal(correct[:7], expected)
    assert accuracy_percent(correct) == evaluate(model, val)


def test_two_ranks_shards_sum_to_the_single_process_vector(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    val = load_splits("digits", None)["val"]
    shards = [
        correct_answers(model, val, OneRankOfTwo(rank=rank, world_size=2), batch_size=16).long() for rank in (0, 1)
    ]
    assert not bool((shards[0] & shards[1]).any())  # every image answered by exactly one rank
    assert torch.equal((shards[0] + shards[1]).bool(), correct_answers(model, val))
