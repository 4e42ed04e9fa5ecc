"""The method-agnostic training loop, preemption, and a finished run's lookup and restore."""
