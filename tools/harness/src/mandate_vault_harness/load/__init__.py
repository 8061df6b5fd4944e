"""The one load generator: an open-loop schedule (`schedule`) in the shapes its callers need.

- `openloop.run_open_loop`: one fixed POST over lean keep-alive connections, phases back to
  back, every outcome kept (overload sweeps: thousands of requests a second);
- `rate.constant_rate`: any aiohttp request at a constant rate, latencies from the due times;
- `rate.CreateLoad`: mandate creation in a background thread, every answer kept;
- `wrk`: closed-loop throughput with wrk (not open loop: for capacity, never for latency).
"""

from mandate_vault_harness.load.openloop import (
    Outcome,
    Run,
    Target,
    percentile,
    recovery_seconds,
    run_open_loop,
)
from mandate_vault_harness.load.rate import (
    Answer,
    CreateLoad,
    OpenLoop,
    constant_rate,
    run_constant_rate,
    summarize,
)
from mandate_vault_harness.load.schedule import Phase, paced
from mandate_vault_harness.load.wrk import Throughput, parse_wrk, wrk, wrk_script, wrk_with_cpu

__all__ = [
    "Answer",
    "CreateLoad",
    "OpenLoop",
    "Outcome",
    "Phase",
    "Run",
    "Target",
    "Throughput",
    "constant_rate",
    "paced",
    "parse_wrk",
    "percentile",
    "recovery_seconds",
    "run_constant_rate",
    "run_open_loop",
    "summarize",
    "wrk",
    "wrk_script",
    "wrk_with_cpu",
]
