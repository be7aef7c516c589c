"""Launch layer: SLURM glue (devices from the allocation, preemption and requeue) and sweeps."""
