"""The harness shared by the tests and the benchmarks (neither imports the other; both import this):
``mem serve`` as a child process (``serve_process``), a throwaway PostgreSQL cluster
(``pg_cluster``), a throwaway QuestDB (``questdb``), the serving fuzz generator (``fuzz``),
certificates and a calling thread for credential rotation (``rotation``), small real champions on
real candles (``models``) and record factories (``records``).

Nothing in ``mem_core``, ``mem_memory``, ``mem_serving``, ``mem_pipelines`` or ``mem_cli`` imports
it (tests/test_architecture.py)."""
