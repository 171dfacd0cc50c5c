"""How long the native tool-call parsers take on large malformed output.

For every tool-call family and every adversarial input kind of
``tests/native_fixtures.malformed_outputs`` (call openings that never close,
truncated calls, open braces, markup soup), it times one parse of 250 kB
and of 1 MB and prints both with their ratio: a linear parser takes about
4x as long on 4x the input (a quadratic one about 16x). It ends with the
slowest 1 MB parse.

    python benchmarks/native_parse_scaling.py --output benchmarks/results/native_parse_scaling.txt

Runs in well under a minute on one core.
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


def timed_parse(renderer: NativeToolRenderer, text: str) -> float:
    start = time.perf_counter()
    renderer.parse(text)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    lines = [f"{'family':16} {'input':24} {'250 kB s':>9} {'1 MB s':>9} {'ratio':>6}"]
    worst = (0.0, "")
    for family in ToolCallFamily:
        renderer = NativeToolRenderer(family)
        small, large = malformed_outputs(family, SMALL), malformed_outputs(family, LARGE)
        for kind in small:
            t_small, t_large = timed_parse(renderer, small[kind]), timed_parse(renderer, large[kind])
            lines.append(f"{family.value:16} {kind:24} {t_small:9.3f} {t_large:9.3f} {t_large / max(t_small, 1e-9):6.1f}")
            worst = max(worst, (t_large, f"{family.value} / {kind}"))
    lines.append(f"slowest 1 MB parse: {worst[0]:.3f} s ({worst[1]})")
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
