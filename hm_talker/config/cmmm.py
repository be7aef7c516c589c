"""Configs of CMMM (Cross-Modal Mapping Module): its losses, its section of `hm-talker fit`, and its own
stage-1 training (`hm-talker fit-cmmm`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from hm_talker.constants import AU_NAMES
from hm_talker.model.config import AudioEncoderConfig, CMMMNetConfig

# lips part / jaw drop carry the mouth opening; the other lower-face AUs shape the lips
_MOUTH_WEIGHT = {"AU25": 4.0, "AU26": 4.0, "AU10": 1.0, "AU12": 1.0, "AU14": 1.0, "AU15": 1.0, "AU17": 1.0,
                 "AU20": 1.0, "AU23": 1.0}


def _default_au_weights() -> list[float]:
    return [_MOUTH_WEIGHT.get(a, 0.5) for a in AU_NAMES]


@dataclass
class CMMMLossConfig:
    au: float = 1.0  # weight of the AU regression loss (weighted MSE of predicted vs measured AUs, AU units)
    au_weights: list[float] = field(default_factory=_default_au_weights)  # per-AU weights, OpenFace order (AU01..AU45)
    speech_l2: float = 1.0  # weight of the sum of squared weights of the AU head on the speech window (ridge: the map one speaker fits, shrunk so it carries to others)
    align: float = 0.1  # weight of the audio/visual alignment loss (InfoNCE: true window vs time-shifted ones)
    temperature: float = 0.1  # softmax temperature of the alignment scores
    shifts: list[int] = field(default_factory=lambda: [-12, -8, -5, -3, 3, 5, 8, 12])  # negative offsets (frames)


@dataclass
class CMMMConfig:
    """The CMMM inside an identity's fit: where it comes from and how it trains there."""
    ckpt: str = ""  # stage-1 checkpoint to load (hm-talker fit-cmmm); "" = stage 1 on this identity first
    freeze: bool = True  # keep the audio -> AU map (and its calibration) fixed in the fit; false: fine-tuned by the rendering loss + its AU loss
    pretrain_steps: int = 3000  # stage-1 steps on this identity's features when ckpt is "" (0 = none; 500 x 32 transferred to no other speaker)
    pretrain_batch_size: int = 64  # frames per stage-1 step
    cache: bool = True  # keep stage 1 in run.dir/cmmm-cache/<key> and reuse it in every run with the same identity, stage-1 settings and seed (false: RUN_DIR/cmmm/, this run only)
    wait_timeout_s: float = 7200.0  # how long a rank (or a second process) waits for the stage 1 another one trains
    au_loss: float = 0.1  # weight of the AU regression loss inside the fit (keeps predictions meaning AUs)
    lr: float = 5.0e-4  # Adam lr of CMMM (stage 1 and fine-tuning)
    weight_decay: float = 1.0e-4  # stage-1 AdamW weight decay (one speaker is easy to over-fit)
    speaker_norm: bool = True  # normalise audio features per band by the speaker's own statistics
    net: CMMMNetConfig = field(default_factory=CMMMNetConfig)  # the networks
    loss: CMMMLossConfig = field(default_factory=CMMMLossConfig)  # stage-1 losses


@dataclass
class CMMMDataConfig:
    roots: list[str] = field(default_factory=list)  # preprocessed identities (any number of people); required
    batch_size: int = 64  # frames per step
    window: int = 8  # video frames in the audio / AU window (must equal model.audio.window)
    num_workers: int = 0  # data-loader worker processes


@dataclass
class CMMMTrainerConfig:
    max_steps: int = 3000  # optimisation steps
    val_every: int = 500  # validate every this many steps (and at the end)
    log_every: int = 20  # log training scalars every this many steps
    accelerator: str = "auto"  # cpu, gpu or auto
    deterministic_cpu: bool = True  # on the CPU, deterministic algorithms (same seed, same machine: same weights)


@dataclass
class CMMMRunConfig:
    dir: str = "runs"  # parent of run directories
    name: str = ""  # run name (= W&B run id); empty: cmmm-<first identity>-seed<seed>
    group: str = ""  # W&B group
    wandb_mode: str = "auto"  # auto (online when logged in), offline, online or disabled; WANDB_MODE wins
    project: str = "hm-talker"  # W&B project


@dataclass
class CMMMFitConfig:
    """`hm-talker fit-cmmm`: CMMM alone (stage 1) on the features of one or several identities."""
    data: CMMMDataConfig = field(default_factory=CMMMDataConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)  # implicit-feature encoder
    cmmm: CMMMConfig = field(default_factory=CMMMConfig)  # networks, losses, lr (ckpt/freeze/pretrain unused here)
    explicit_aus: str = "all"  # AUs that feed the explicit feature: all, lower or jaw
    trainer: CMMMTrainerConfig = field(default_factory=CMMMTrainerConfig)
    run: CMMMRunConfig = field(default_factory=CMMMRunConfig)
    seed: int = 0  # seeds the weights and the data order


# fields added with a default other than what checkpoints saved before them were trained with: (dotted key, the
# value those checkpoints mean); a stored config without the key is read with that value
LEGACY_DEFAULTS = (("cmmm.net.formant_share", 0.0),)  # the formant head came with preprocessing's formant rows


def with_legacy_defaults(cfg, stored: dict):
    """`cfg` (merged from `stored`, a checkpoint's config) with LEGACY_DEFAULTS where `stored` lacks the key."""
    from omegaconf import OmegaConf

    for key, value in LEGACY_DEFAULTS:
        node = stored
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def load_config(config_path: str | None, overrides: list[str]):
    """`hm-talker fit-cmmm`'s config: CMMMFitConfig <- CONFIG (optional) <- key=value overrides, by the
    loader every command uses; data.roots is required."""
    from hm_talker.config.loading import load_structured
    from hm_talker.errors import InputError

    cfg = load_structured(CMMMFitConfig, config_path, overrides)
    if not cfg.data.roots:
        raise InputError(config_path, "data.roots is empty (pass data.roots=[IDENTITY_DIR,...])")
    from hm_talker.validate import check_cmmm_config

    check_cmmm_config(cfg, config_path)
    return cfg
