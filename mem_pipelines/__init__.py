"""MEM data and model pipelines: candles in QuestDB -> features -> labels -> model -> gate."""
