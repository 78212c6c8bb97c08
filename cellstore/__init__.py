"""cellstore: a feature store for single-cell profiling."""
