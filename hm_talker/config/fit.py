"""Structured config of `hm-talker fit`: every weight, learning rate and schedule value is a field.

`experiments/*.yaml` files are overrides on top of these defaults, and `key=value` arguments
are overrides on top of the file; unknown keys are an error (struct mode).

Training schedule chosen (``schedule``): ONE joint stage in which face and mouth Gaussians
and both deformation branches are optimised together from step 0, preceded by a short
*mouth warm-up* during which the face deformation is frozen (its parameters get no update).
Why: TalkingGaussian trains the mouth and face separately and then fuses them; with the
composite (mouth behind face) rendered in every step the two are trained against the same
frame, so a separate fusion stage is not needed, but during the very first steps the face
Gaussians would otherwise "explain" lip motion by deforming themselves before the inside-
mouth branch has learned to open; freezing the face deformation briefly lets the mouth branch
take the jaw motion first.  The static canonical Gaussians (colour, shape) train throughout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hm_talker.config.cmmm import CMMMConfig
from hm_talker.config.sfp import SFPConfig
from hm_talker.errors import InputError
from hm_talker.model.config import HMMMConfig, ModelConfig


@dataclass
class DataConfig:
    root: str = "???"  # preprocessed identity directory (output of `hm-talker preprocess`); required
    batch_size: int = 2  # frames per training step
    val_batch_size: int = 8  # frames per validation batch
    num_workers: int = 0  # data-loader worker processes (0: read in the training process)
    window: int = 8  # W: video frames in the audio / AU window (must equal model.audio.window)
    shuffle_buffer: int = 64  # sample shuffle buffer (seeded by seed, epoch and reader: reproducible)
    max_corrupt_fraction: float = 0.5  # stop with an error when more than this share of a reader's epoch fails to decode
    corrupt_warnings: int = 5  # corrupt samples warned about one by one per reader; the rest are counted and summarised


@dataclass
class LossConfig:
    l1: float = 1.0  # weight of the L1 photometric loss inside the face mask
    dssim: float = 0.2  # weight of (1 - SSIM) / 2 inside the face mask
    ssim_window: int = 7  # SSIM Gaussian window size (pixels; odd)
    lpips: float = 0.01  # weight of LPIPS on the lip crop (0 = off)
    lpips_patch: float = 0.01  # weight of LPIPS on a random face patch per frame (0 = off)
    lpips_patch_size: int = 64  # side of that patch in pixels (the face box when smaller)
    # lip crops and patches are resized to this side before LPIPS. AlexNet's five LPIPS layers are
    # 15/7/3/3/3 px wide at 64 (at 32: 7/3/1/1/1, the deep layers one pixel: no spatial comparison);
    # 64 is about a lip box's native size at 512 px, and 128 would cost 4x per crop
    lpips_crop_size: int = 64
    lpips_start_step: int = 1000  # LPIPS terms join from this step on (colours first, then perceptual detail)
    alpha: float = 0.1  # weight of L1 between the rendered head alpha and the face mask
    deform_size: float = 1.0e-3  # weight of mean |d_xyz|^2 (+ |d_scale|^2): keeps motion small and smooth
    mask_dilate: int = 1  # dilate the face mask by this many pixels before masking the losses
    lip_motion: float = 100.0  # weight of the landmark-motion loss: face Gaussians near a lip / jaw landmark move as it did (x, y)
    lip_motion_radius: float = 0.06  # a face Gaussian follows its nearest lower-face landmark within this distance (head units)


@dataclass
class OptimConfig:
    lr_means: float = 1.6e-4  # Adam lr of the canonical centres (scaled by the head extent, ~2)
    lr_means_final: float = 1.6e-6  # centre lr at the decay horizon (exponential decay, as in 3DGS)
    lr_quats: float = 1.0e-3  # Adam lr of the rotations
    lr_scales: float = 5.0e-3  # Adam lr of the log-scales
    lr_opacities: float = 5.0e-2  # Adam lr of the opacity logits
    lr_colors: float = 2.5e-3  # Adam lr of the SH DC colour coefficients
    lr_colors_rest: float = 1.25e-4  # Adam lr of higher SH coefficients (only with sh_degree > 0)
    lr_networks: float = 2.0e-3  # Adam lr of the audio encoder and deformation MLPs (5e-4 left the AU -> mouth map of short fits unlearned by chance: README, "Learning rate")
    lr_grids: float = 5.0e-3  # Adam lr of the hash-grid tables
    network_decay_final: float = 0.1  # network lrs are multiplied by this at the decay horizon (exponential)
    decay_steps: int = 0  # horizon of both decays in steps; 0 = trainer.max_steps (fix it to resume with a new max_steps)
    adam_eps: float = 1.0e-15  # Adam epsilon (small: Gaussian parameter gradients are tiny)


@dataclass
class DensifyConfig:
    """Adaptive density control of the canonical Gaussians: one `hm_talker.render.DensifyStrategy` per
    branch (face, mouth), both with these settings (the fields of `hm_talker.render.StrategyConfig`,
    plus `enabled`). Steps count completed optimisation steps (1 after the first); lengths are in
    head units (the strategies' scene_scale is 1)."""
    enabled: bool = True  # densify (clone/split), prune and reset the opacities of both branches
    refine_start: int = 100  # first step (exclusive) at which Gaussians may be densified / pruned
    refine_stop: int = 2000  # from this step on: no statistics, refinement or opacity reset (the last clones settle)
    refine_every: int = 100  # steps between two refinements
    reset_every: int = 1000  # steps between opacity resets (0 = never); below refine_stop, else no reset and no size prune
    pause_after_reset: int = 0  # no refinement within this many steps after a reset (0 = none)
    reset_settle_steps: int = 500  # no opacity reset within this many steps of trainer.max_steps (a run must not end faded)
    grad_threshold: float = 2.0e-4  # mean screen-space position-gradient norm (NDC-like units) above which a Gaussian grows
    grow_scale3d: float = 0.02  # Gaussians with max scale <= this (head units) are cloned, larger ones split
    grow_scale2d: float = 0.05  # also split if the max screen radius > this fraction of the image (before refine_scale2d_stop)
    refine_scale2d_stop: int = 0  # screen-radius split / prune rules apply before this step (0 = never)
    split_into: int = 2  # children per split Gaussian
    split_shrink: float = 1.6  # children's scales are the parent's divided by this
    prune_opacity: float = 0.01  # Gaussians with opacity below this are pruned
    prune_scale3d: float = 0.2  # after the first opacity reset, prune Gaussians larger than this (head units)
    prune_scale2d: float = 0.15  # prune if the max screen radius > this fraction of the image (before refine_scale2d_stop)
    reset_opacity: float = 0.05  # opacities are clamped to at most this at each reset
    max_gaussians: int = 50000  # never grow a branch beyond this many Gaussians (the highest gradients win)
    seed: int = 0  # seed of the split-sampling generators (face: seed, mouth: seed + 1)


@dataclass
class ScheduleConfig:
    # Joint training with a mouth warm-up (see the module docstring for why).
    mouth_warmup_steps: int = 200  # steps during which the face deformation is frozen
    train_mouth_colors: bool = True  # optimise the inside-mouth Gaussians' colours


@dataclass
class TrainerConfig:
    max_steps: int = 3000  # optimisation steps
    devices: int = 1  # devices (GPUs or CPU processes)
    num_nodes: int = 1  # machines (DDP over nodes; SLURM sets the rank environment)
    accelerator: str = "auto"  # cpu, gpu or auto
    precision: str = "32-true"  # Lightning precision string (the rasteriser wants fp32)
    deterministic_cpu: bool = True  # on the CPU, deterministic algorithms: the same seed on the same machine gives the same weights (a little slower; CUDA runs keep their kernels)
    log_every: int = 10  # log training scalars every this many steps
    val_every: int = 500  # validate every this many steps (and at the end)
    checkpoint_every: int = 500  # write checkpoints/last.ckpt every this many steps (and at the end)
    limit_val_batches: int = -1  # validation batches per check (-1 = all)
    progress_every: int = 100  # when stdout is not a terminal: a progress line every this many steps (a terminal gets a live line)


@dataclass
class EvalConfig:
    """Lip sync measured in every validation of a fit, as `hm-talker evaluate` measures it (val/... keys,
    hm_talker/evaluation/validation.py)."""
    lip_sync: bool = True  # render the held-out frames driven by audio only and score them: val/mouth_r, val/mouth_amp, ...
    drive_video: Any = None  # a real video of another person speaking, or a list: its sound drives the model, its mouth is the reference (val/cross_*)
    cross_seconds: float = 20.0  # at most this many seconds of each drive_video per validation (0: all of it)
    deaf_control: bool = False  # also drive with every audio input silenced (val/cross_*_deaf): the chance level of each reference


@dataclass
class RunConfig:
    dir: str = "runs"  # parent directory of run directories
    name: str = ""  # run name (= W&B run id); empty: "<identity>-<experiment>-seed<seed>-<config hash>" (training/run_id.py)
    group: str = ""  # W&B group (e.g. an ablation)
    tags: list[str] = field(default_factory=list)  # W&B tags
    wandb_mode: str = "auto"  # auto (online when logged in to W&B, else offline), offline, online or disabled; WANDB_MODE wins
    project: str = "hm-talker"  # W&B project


@dataclass
class FitConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    strategy: DensifyConfig = field(default_factory=DensifyConfig)  # densification (one strategy per branch)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    hmmm: HMMMConfig = field(default_factory=HMMMConfig)  # hybrid motion: fusion of implicit + explicit features
    sfp: SFPConfig = field(default_factory=SFPConfig)  # stochastic feature pairing: explicit source per step
    cmmm: CMMMConfig = field(default_factory=CMMMConfig)  # audio -> AUs: stage-1 checkpoint, freezing, losses
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)  # lip sync in every validation
    run: RunConfig = field(default_factory=RunConfig)
    seed: int = 0  # seeds torch / numpy / python RNGs and the data order


DEFAULT_EXPERIMENT = Path("experiments") / "hm_talker.yaml"  # the default model; relative to the repository root


def default_config_path() -> Path:
    """experiments/hm_talker.yaml of the source checkout, else relative to the working directory."""
    here = Path(__file__).resolve().parents[2] / DEFAULT_EXPERIMENT
    return here if here.is_file() else DEFAULT_EXPERIMENT


def load_config(config_path: str | None, overrides: list[str]) -> DictConfig:
    """`hm-talker fit`'s config: FitConfig <- CONFIG (default experiments/hm_talker.yaml) <- key=value
    overrides; data.root is required and every field is checked against its range."""
    from hm_talker.config.loading import load_structured

    path = Path(config_path) if config_path else default_config_path()
    cfg = load_structured(FitConfig, path, overrides)
    if OmegaConf.is_missing(cfg.data, "root"):
        raise InputError(path, "data.root is not set (pass data.root=IDENTITY_DIR)")
    check_fit_config(cfg, path if config_path else None)
    return cfg


def check_fit_config(cfg: DictConfig, source=None) -> None:
    """Every check of a fit config, for `fit` and for each run of a sweep plan: the ranges and names
    (hm_talker.validate), then the SFP rules (config/sfp.py: a share the alternate cycle cannot hold, a
    field the chosen schedule never reads)."""
    from hm_talker import validate
    from hm_talker.config.sfp import config_problem

    validate.check_fit_config(cfg, source)
    problem = config_problem(cfg.sfp)
    if problem:
        raise InputError(source, problem)
