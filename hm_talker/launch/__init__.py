"""`hm-talker sweep`: W&B-format sweep specs expanded into runs (sweep.py) and where they run (launchers.py:
here, a SLURM array of `launch.task`, or W&B agents). The SLURM glue of a single fit (devices from the
allocation, preemption and requeue) is training/slurm_env.py and training/preemption.py."""
