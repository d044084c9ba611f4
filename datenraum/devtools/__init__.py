"""Not product: the tools that run Datenraum on one machine, for the demo, the tests and the benchmarks.

- `demo`: `datenraum demo`, synthetic hospitals with stores and agents, a hub and a federated query;
  its `DEMO_QUERY` is also the tests' example query.
- `federation`: a hub and site agents as child processes on 127.0.0.1 (`LocalFederation`, `Researcher`).
- `slow_agent`: the real site agent, pausing before each count (for the federation's fault tests).
- `postgres`: a throwaway PostgreSQL cluster for the hub's tests and the federation benchmark.
- `ports`: a free loopback port.

No product package imports this one (`tests/test_layers.py`); the CLI, tests and benchmarks do.
"""
