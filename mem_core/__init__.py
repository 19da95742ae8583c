"""What training and serving share: candle access (QuestDB), features, labels, the model
registry and the project's paths. Imports only ``mem_memory`` among our packages."""
