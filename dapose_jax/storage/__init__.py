"""What a run writes and reads back: its folder and lock, Orbax checkpoints, metric files."""
