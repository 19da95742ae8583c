"""gRPC serving of the MEM platform: predictions, enhanced signals and outcomes (see docs/serving.md)."""
