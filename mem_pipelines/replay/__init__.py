"""The replay: trade history through the running server and compare base, base + ML and the full system.

Pure parts (no I/O): ``base_strategy``, ``simulator``, ``metrics``, ``report``. ``runner`` talks to
QuestDB, MLflow and the gRPC server (through the public ``mem_serving.client``); ``learner`` runs
the learning sensors' functions (``mem_pipelines.learning.runners``) on the server's memory store;
``assets`` is the Dagster asset around ``runner.run_replay``.
"""
