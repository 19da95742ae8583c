"""QuestDB: a local server the project runs itself, and the candles table on it."""
