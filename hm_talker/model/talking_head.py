"""The whole person-specific model: CMMM (audio -> implicit feature, predicted AUs, explicit feature) and
the Gaussian head whose lower face HMMM's fused condition deforms. Networks only: no Lightning, no loop.

A rendered frame is: CMMM on the frame's audio window (and speaker-free speech window) -> the implicit
feature and predicted AUs; the explicit feature of the predicted AUs (or, in training on SFP's measured
steps, of the AUs measured on the frame); HMMM fuses both into the condition of the face branch (lips,
jaw) and of the mouth branch; the face branch also reads the upper-face AUs (eyes, brows); both branches
are rendered with the frame's camera and composited over the real frame outside the face region.

`hm_talker.training.hmmm_module.HMMMModule` trains this model (it is one); `hm_talker.driving` loads a
checkpoint into it and drives it with any speech.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from hm_talker.constants import AU_MAX, AU_NAMES, JAW_AU_IDX, MEASURED, PREDICTED, UPPER_AU_SOURCES
from hm_talker.model.cmmm import CMMM
from hm_talker.model.head import GaussianHead, face_region
from hm_talker.render import RenderConfig


class TalkingHead(nn.Module):
    """CMMM + Gaussian head (see the module docstring).

    cfg: the run's FitConfig (hm_talker/config/fit.py; this reads its model, hmmm, cmmm.net, seed and
    loss.mask_dilate sections); mean_shape: the identity's mean landmark shape [478, 3]; render_cfg: how to
    rasterise (default: the model config's backend and tile size); config_dict: the config as a plain dict
    (what checkpoints store)."""

    def __init__(self, cfg, mean_shape: np.ndarray, render_cfg: RenderConfig | None = None,
                 config_dict: dict | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.config_dict = config_dict or {}
        model, hmmm, cmmm = cfg.model, cfg.hmmm, cfg.cmmm.net
        cond_dim = model.audio.condition_dim
        # every condition the deformation reads has the audio condition's width
        model.deformation.face.condition_dim = cond_dim
        model.deformation.mouth.audio_dim = cond_dim
        model.deformation.face.upper_au_dim = len(model.upper_aus)
        cmmm.explicit_dim = cond_dim
        if hmmm.mode not in ("hybrid", "implicit", "explicit"):
            raise ValueError(f"hmmm.mode must be hybrid, implicit or explicit, not {hmmm.mode!r}")
        if hmmm.upper_au_source not in UPPER_AU_SOURCES:
            raise ValueError(f"hmmm.upper_au_source must be one of {', '.join(UPPER_AU_SOURCES)}, "
                             f"not {hmmm.upper_au_source!r}")
        self.mode, self.upper_au_source, self.mask_dilate = hmmm.mode, hmmm.upper_au_source, cfg.loss.mask_dilate
        self.silence_audio = model.silence_audio
        if model.face_region not in ("pose", "frame"):
            raise ValueError(f"model.face_region must be pose or frame, not {model.face_region!r}")
        self.region_kind = model.face_region
        self.upper_au_idx = [AU_NAMES.index(a) for a in model.upper_aus]
        render_cfg = render_cfg or RenderConfig(backend=model.render_backend, tile_size=model.tile_size)
        self.head = GaussianHead(model.gaussians, model.deformation, hmmm, mean_shape, cfg.seed, render_cfg,
                                 model.upper_au_reach, model.upper_au_edge, model.face_region_chin)
        self.cmmm = CMMM(model.audio, cmmm, hmmm.explicit_aus)

    @property
    def face(self):
        return self.head.face

    @property
    def mouth(self):
        return self.head.mouth

    def conditions(self, batch: dict, source: str = PREDICTED) -> dict:
        """CMMM on the audio window -> implicit feature, predicted AUs, and the explicit feature of
        `source` ("measured": batch["aus"], "predicted": CMMM's AUs); the upper-face AUs [B, Au] in [0, 1].
        batch["speaker"] (optional, a SpeakerStats): statistics of a driving speech that is not the
        training identity's; they travel with the audio they describe. batch["silent"] (optional):
        every audio input replaced by its mean (the speaker's average features, the speech window's 0), as
        model.silence_audio does for a whole model: a deaf control that stays inside the inputs' range.
        batch["upper_au_source"] (optional): frames | predicted | constant for this batch, in place of
        hmmm.upper_au_source (the self-driven protocol never takes the scored frames' own).
        batch["hold_explicit"] (optional, SFP's predicted steps under sfp.predicted_explicit_grad=false): the
        AU encoder and the fusions' explicit gates take no gradient from this batch (GaussianHead.explicit_held)."""
        audio, speech, speaker = batch["audio_window"], batch.get("speech_window"), batch.get("speaker")
        if self.silence_audio or batch.get("silent", False):  # a deaf control: no audio input carries information
            audio = self.cmmm.uninformative(audio, speaker)
            speech = None if speech is None else torch.zeros_like(speech)  # z-scored: 0 is its mean
        out = self.cmmm(audio, speech, speaker)
        if batch.get("silent_implicit", False) and self.mode == "hybrid":  # predicted AUs from the real audio,
            out["implicit"] = self.cmmm(self.cmmm.uninformative(audio, speaker), speech, speaker)["implicit"]  # no voice
        implicit = out["implicit"] if self.mode != "explicit" else torch.zeros_like(out["implicit"])
        explicit = None
        if self.mode != "implicit":
            aus = batch["aus"] if source == MEASURED else out["aus"]
            if source == PREDICTED and "predicted_share" in batch:  # SFP training: the prediction's error, scaled
                aus = batch["aus"] + batch["predicted_share"] * (out["aus"] - batch["aus"])
            if source == PREDICTED and "predicted_max_error" in batch:  # SFP training: pair the close frames only
                keep = self.close_predictions(out["aus"], batch["aus"], batch["predicted_max_error"])
                aus = batch["aus"] + keep.unsqueeze(1) * (aus - batch["aus"])
                out["predicted_kept"] = keep.mean()
            with torch.set_grad_enabled(torch.is_grad_enabled() and not batch.get("hold_explicit", False)):
                explicit = self.cmmm.explicit(aus)  # held (SFP predicted steps): the AU encoder takes no gradient
        upper_source = batch.get("upper_au_source", self.upper_au_source)  # a protocol may choose its own
        if upper_source == "constant":  # the identity's mean (a diagnostic: no upper-face motion)
            upper_src = self.cmmm.meas_mean.expand_as(out["aus"])
        else:
            upper_src = batch["aus"] if upper_source == "frames" else out["aus"]
        return {"implicit": implicit, "explicit": explicit, "upper": upper_src[:, self.upper_au_idx] / AU_MAX,
                "pred_aus": out["aus"], "raw_aus": out["raw_aus"], "predicted_kept": out.get("predicted_kept")}

    def close_predictions(self, predicted: Tensor, measured: Tensor, max_error: float) -> Tensor:
        """[B] 1.0 where a frame's predicted mouth opening (AU25, AU26) misses the measured one by at most
        `max_error` (RMS over the two, each in units of the identity's measured spread), else 0.0
        (sfp.predicted_max_error)."""
        spread = self.cmmm.meas_std[JAW_AU_IDX].clamp_min(1e-3)
        z = (predicted.detach()[:, JAW_AU_IDX] - measured[:, JAW_AU_IDX]) / spread
        rms = z.pow(2).mean(1).sqrt()
        return (rms <= max_error).to(measured.dtype)

    def deform(self, batch: dict, source: str = PREDICTED, face_grad: bool = True) -> dict:
        """Deformed Gaussians of both branches for every frame of the batch ([B, N, *]).

        The default source is the audio-only path of driving: predicted AUs."""
        c = self.conditions(batch, source)
        with self.head.explicit_held(batch.get("hold_explicit", False)):
            deformed = self.head.deform(c["implicit"], c["explicit"], c["upper"], face_grad=face_grad)
        deformed["conditions"] = c
        return deformed

    def region(self, batch: dict) -> Tensor:
        """[B, 1, H, W] where the head is rendered (model.face_region); the real frame is kept outside it."""
        return (self.head.pose_region(batch, self.mask_dilate) if self.region_kind == "pose"
                else face_region(batch["masks"], self.mask_dilate))

    def render(self, batch: dict, deformed: dict) -> dict:
        """Composite per frame (see GaussianHead.render): rgb [B, 3, H, W], alpha, metas, face_mask."""
        return self.head.render(batch, deformed, self.region(batch))



def to_uint8(rgb: Tensor) -> np.ndarray:  # [B, 3, H, W] in [0, 1] -> [B, H, W, 3] uint8 on the host
    return (rgb.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
