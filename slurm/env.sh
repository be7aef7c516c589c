# Sourced by every template in slurm/: edit once for your cluster (modules, venv, W&B, data roots).
# Everything here can also be set in the environment before `sbatch` (sbatch exports it to the job).

# Modules of your site, e.g.:
# module load cuda/12.4 ffmpeg

# The Python with hm-talker installed (./install.sh makes .venv in the checkout)
VENV=${VENV:-.venv}
HM_TALKER_PYTHON=${HM_TALKER_PYTHON:-$VENV/bin/python}

# W&B: unset = online when `wandb login` was run on this account, offline otherwise;
# offline runs upload later with `wandb sync RUN_DIR/wandb/offline-run-*`.
# export WANDB_MODE=offline
# export WANDB_ENTITY=my-team

# Where preprocessed identities and runs live (shared filesystem, seen by every node)
export HM_TALKER_DATA=${HM_TALKER_DATA:-$HOME/hm-talker/data}
export HM_TALKER_RUNS=${HM_TALKER_RUNS:-$HOME/hm-talker/runs}

# Threads per process: the CPUs SLURM gave each task
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
