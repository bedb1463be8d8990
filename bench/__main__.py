"""Run every benchmark in turn (`make bench`)."""

from __future__ import annotations

from . import (
    bench_align,
    bench_coordinator,
    bench_earthengine,
    bench_pack,
    bench_raw_io,
    bench_run,
    bench_sample,
)

if __name__ == "__main__":
    bench_sample.main()
    bench_raw_io.main()
    bench_earthengine.main()
    bench_align.main()
    bench_pack.main()
    bench_run.end_to_end(48)
    bench_run.coordinator_overhead()
    bench_coordinator.bookkeeping()
