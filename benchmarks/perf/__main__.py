"""`python -m benchmarks.perf`: see benchmarks/perf/run.py."""

from __future__ import annotations

from benchmarks.perf.run import main

raise SystemExit(main())
