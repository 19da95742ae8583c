"""The replay: trade history through the running server and compare base, base + ML and the full system.

Pure parts (no I/O): ``base_strategy``, ``simulator``, ``metrics``, ``report``. ``runner`` talks to
QuestDB, the gRPC server, MLflow and the memory store.
"""
