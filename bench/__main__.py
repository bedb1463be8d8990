"""Run every benchmark in turn (`make bench`)."""

from __future__ import annotations

from . import bench_align, bench_sample

if __name__ == "__main__":
    bench_sample.main()
    bench_align.main()
