"""Foundation benchmark: generator speed, store read throughput and RSS (1x, 10x), physics-limit accuracy.

Runs ``bench_physics`` and ``bench_store`` in one go and writes ``benchmarks/results/bench_data.json`` and
``bench_data.md`` (the figures quoted in docs/results.md).

    python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_physics  # noqa: E402
import bench_store  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    """Run both benchmarks, print the markdown tables and write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = parser.parse_args()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "quick": args.quick,
        "physics": bench_physics.run(quick=args.quick),
        "store": bench_store.run(quick=args.quick),
    }
    markdown = "\n\n".join(
        [
            bench_physics.to_markdown(results["physics"]),
            "# bench_store\n\n" + bench_store.markdown(results["store"]),
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_data.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "bench_data.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
