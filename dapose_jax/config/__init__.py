"""Config building blocks that import nothing heavier than ml_collections: shared keys, tasks, variants."""
