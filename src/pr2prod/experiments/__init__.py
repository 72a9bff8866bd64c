"""Parameter sweeps run as DVC experiments: the grid, the queue, the table, the promotion."""
