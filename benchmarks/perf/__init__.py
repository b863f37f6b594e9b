"""moodboard's performance suite (issue 6): every figure next to a baseline measured in the same run.

    python -m benchmarks.perf                  # default run (full-size ViT-B/32-shaped bundle)
    python -m benchmarks.perf --quick          # CI smoke: tiny bundle, small sizes, about a minute
    python -m benchmarks.perf --full           # adds the 1M-vector index and the 20k-image catalog
    python -m benchmarks.perf --only embed,index --out benchmarks/results/perf.json

Sections: embed (embedding.py), index (index.py), query (query_e2e.py), cold (cold_start.py),
loader (loader.py). Absolute times depend on the machine and its load; the ratios against the
same-run baselines are what the targets in docs/performance.md are checked on.

This package is kept import-light: the child processes of the cold-start and loader sections are
started as `python -m benchmarks.perf.<module>`, which imports this file first.
"""
