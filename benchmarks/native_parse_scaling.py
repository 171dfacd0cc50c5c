"""How long the native tool-call parsers take on large malformed output.

For every tool-call family and every adversarial input kind of
``tests/native_fixtures.malformed_outputs`` (call openings that never close,
truncated calls, open braces, markup soup), it times one parse of 250 kB
and of 1 MB (best of three) and prints both with their ratio: a linear
parser takes about 4x as long on 4x the input (a quadratic one about 16x);
no ratio is printed where the 250 kB parse takes under 5 ms (timer noise).
It ends with the slowest 1 MB parse and the largest ratio.

    python benchmarks/native_parse_scaling.py --output benchmarks/results/native_parse_scaling.txt

Runs in about a minute on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from native_fixtures import malformed_outputs  # noqa: E402

from meta_spider.native import NativeToolRenderer, ToolCallFamily  # noqa: E402

SMALL, LARGE = 250_000, 1_000_000


#: Below this the 250 kB time is mostly timer noise: no ratio is printed.
MIN_SECONDS = 0.005


def timed_parse(renderer: NativeToolRenderer, text: str) -> float:
    """The best of three parses, in seconds."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        renderer.parse(text)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    lines = [f"{'family':16} {'input':24} {'250 kB s':>9} {'1 MB s':>9} {'ratio':>6}"]
    worst = (0.0, "")
    steepest = (0.0, "")
    for family in ToolCallFamily:
        renderer = NativeToolRenderer(family)
        small, large = malformed_outputs(family, SMALL), malformed_outputs(family, LARGE)
        for kind in small:
            t_small, t_large = timed_parse(renderer, small[kind]), timed_parse(renderer, large[kind])
            ratio = f"{t_large / t_small:6.1f}" if t_small >= MIN_SECONDS else f"{'-':>6}"
            lines.append(f"{family.value:16} {kind:24} {t_small:9.3f} {t_large:9.3f} {ratio}")
            worst = max(worst, (t_large, f"{family.value} / {kind}"))
            if t_small >= MIN_SECONDS:
                steepest = max(steepest, (t_large / t_small, f"{family.value} / {kind}"))
    lines.append(f"slowest 1 MB parse: {worst[0]:.3f} s ({worst[1]})")
    lines.append(f"largest 1 MB / 250 kB ratio: {steepest[0]:.1f} ({steepest[1]})")
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
