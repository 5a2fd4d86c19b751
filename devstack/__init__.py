"""The embedded development stack: Postgres, the Temporal dev server (with its Web UI), the
Places emulator and a worker as child processes, for `starter.py dev` and `demo`, the tests
and the benchmarks. Tooling, not the product: the production image never runs it."""
