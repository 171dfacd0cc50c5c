"""The parsers take linear time on malformed output: 4x the input takes
well under 8x the time (a quadratic parser takes about 16x). Relative
timing only, in this thread's CPU time (other processes on a busy machine
do not count in it), the best of five rounds that time both sizes in turn;
absolute numbers are in benchmarks/native_parse_scaling.py's output."""

from __future__ import annotations

import time

import pytest

from native_fixtures import malformed_outputs

from meta_spider.native import NativeToolRenderer, ToolCallFamily

START_SIZE, MAX_SIZE = 20_000, 320_000
#: Below this the timer's noise and fixed costs would decide the ratio.
MIN_SECONDS = 0.03


def run_time(renderer: NativeToolRenderer, texts: list[str]) -> float:
    start = time.thread_time()
    for text in texts:
        renderer.parse(text)
    return time.thread_time() - start


def best_times(renderer: NativeToolRenderer, small: list[str], large: list[str], rounds: int = 5) -> tuple[float, float]:
    best_small = best_large = float("inf")
    for _ in range(rounds):
        best_small = min(best_small, run_time(renderer, small))
        best_large = min(best_large, run_time(renderer, large))
    return best_small, best_large


@pytest.mark.parametrize("family", list(ToolCallFamily), ids=lambda f: f.value)
def test_four_times_the_malformed_input_takes_less_than_eight_times_as_long(family: ToolCallFamily) -> None:
    renderer = NativeToolRenderer(family)
    size = START_SIZE
    small = list(malformed_outputs(family, size).values())
    small_time = min(run_time(renderer, small) for _ in range(3))
    while small_time < MIN_SECONDS and size < MAX_SIZE:
        size *= 2
        small = list(malformed_outputs(family, size).values())
        small_time = min(run_time(renderer, small) for _ in range(3))
    # A parse too fast to time reliably even at MAX_SIZE is repeated.
    repeats = min(50, max(1, round(MIN_SECONDS / max(small_time, 1e-6))))
    large = list(malformed_outputs(family, 4 * size).values())
    assert all(len(text) == 4 * size for text in large)
    small_best, large_best = best_times(renderer, small * repeats, large * repeats)
    ratio = large_best / small_best
    assert ratio < 8, f"{family.value}: 4x the input took {ratio:.1f}x as long"
