"""CMMM (Cross-Modal Mapping Module), its networks: audio -> implicit feature and predicted AUs; AUs ->
explicit feature; audio / AU windows -> alignment embeddings.

- implicit feature: the `AudioEncoder` over the audio-feature window around a frame ([B, W, k, D] -> [B, C]);
- AU head: the 17 OpenFace AU intensities in [0, 5] (a sigmoid times AU_MAX) from a linear map of the
  speech window (per-row log energy and spectral flux, z-scored per utterance: the input that transfers
  best to other speakers, benchmarks/bench_audio_mouth.py) and/or an MLP of the implicit feature
  (`au_input`); calibration (`calibrate`) maps the current speaker's prediction statistics onto the
  identity's measured AU statistics, since an audio-only predictor shrinks towards the mean; beside the
  linear map, the formant head (`formant_share`): small MLPs on the speech window with its formant rows,
  fitted after stage 1 and blended with the linear map in z-units;
- AU encoder: 17 AUs (or the lower-face subset, zeros elsewhere) -> explicit feature [B, E];
- alignment: the per-frame audio features of the window (weighted by the implicit feature's temporal
  attention) and the window of measured AUs are each embedded as a unit vector; their dot product scores
  how well the sound matches the motion. The alignment loss trains the implicit feature (frame encoder and
  attention); the AU regression trains the AU prediction (the speech head).

Networks only: the losses and the training loop live in hm_talker/training/cmmm_module.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hm_talker.constants import AU_MAX, AU_NAMES, FORMANT_DIM, JAW_AU_IDX, LOWER_AU_IDX
from hm_talker.model.audio_encoder import AudioEncoder
from hm_talker.model.config import AudioEncoderConfig, CMMMNetConfig
from hm_talker.model.layers import mlp

NUM_AUS = len(AU_NAMES)
LEAKY_SLOPE = 0.02  # negative slope of the LeakyReLUs of CMMM's MLPs


def au_subset_mask(subset: str) -> Tensor:  # [17] 1 where the AU feeds the explicit feature
    """`all` -> every AU; `lower` -> the lower-face AUs (AU10 12 14 15 17 20 23 25 26) only; `jaw` -> the
    mouth's opening (AU25, AU26) only."""
    if subset == "all":
        return torch.ones(NUM_AUS)
    subsets = {"lower": LOWER_AU_IDX, "jaw": JAW_AU_IDX}
    if subset in subsets:
        mask = torch.zeros(NUM_AUS)
        mask[subsets[subset]] = 1.0
        return mask
    raise ValueError(f"explicit AU subset must be all, lower or jaw, not {subset!r}")


@dataclass
class SpeakerStats:
    """Statistics of the speech that drives CMMM, when it is not the training identity's own: the per-band
    mean / std of its audio features [D] (speaker normalisation) and the mean / std of CMMM's raw AU
    predictions over it [17] (calibration). Computed per driving speech (hm_talker.driving.speech) and
    passed to every forward call, so a loaded model is never changed by what drives it."""

    audio_mean: Tensor | None = None  # [D]; None: the training identity's (the model's buffers)
    audio_std: Tensor | None = None  # [D], at least 1e-3
    pred_mean: Tensor | None = None  # [17]; None: the training identity's (the model's buffers)
    pred_std: Tensor | None = None  # [17]

    def to(self, device) -> "SpeakerStats":
        move = (lambda t: None if t is None else t.to(device))
        return SpeakerStats(move(self.audio_mean), move(self.audio_std), move(self.pred_mean), move(self.pred_std))


class SpeechConv(nn.Module):
    """The nonlinear temporal AU head: speech window [B, Ws, k, 2] -> AU logits [B, 17]. Strided 1D
    convolutions along its Ws * k rows of 10 ms (time) with the speech features as channels, then a linear
    map of what they leave (the order of events in the window matters: a syllable's onset, its peak)."""

    def __init__(self, rows: int, dim: int, channels: list[int], kernel: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, t = dim, rows
        for ch in channels:
            layers += [nn.Conv1d(c, ch, kernel, stride=2, padding=kernel // 2), nn.LeakyReLU(LEAKY_SLOPE)]
            c, t = ch, (t + 2 * (kernel // 2) - kernel) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(c * t, NUM_AUS)

    def forward(self, speech_window: Tensor) -> Tensor:  # [B, Ws, k, 2] -> [B, 17]
        b, w, k, d = speech_window.shape
        x = self.conv(speech_window.reshape(b, w * k, d).transpose(1, 2))  # [B, C, T']
        return self.out(self.drop(x.flatten(1)))


class FrameSpeech(nn.Module):
    """The per-frame linear AU head: speech window [B, Ws, k, 2] -> AU logits [B, 17]. Each frame's k rows of
    10 ms are averaged first, so the map has Ws * 2 weights per AU instead of Ws * k * 2: the 10 ms detail of
    one speaker's syllables is what a linear map over every row fits and another speaker's speech lacks."""

    def __init__(self, window: int, dim: int) -> None:
        super().__init__()
        self.out = nn.Linear(window * dim, NUM_AUS)

    def forward(self, speech_window: Tensor) -> Tensor:  # [B, Ws, k, 2] -> [B, 17]
        return self.out(speech_window.mean(2).flatten(1))


class FormantHead(nn.Module):
    """The nonlinear AU head on energy, flux and formants: speech window [B, Ws, k, 2 + 4] -> AUs in z-units
    of the AUs measured in stage 1 [B, 17], the mean of `heads` small MLPs over the standardised window.
    Fitted after stage 1 on its training frames (hm_talker/training/formant_head.py), then blended with the
    linear head in z-units (`blend`): the identity's own mouth follows its vowels better than its loudness
    (benchmarks/bench_speaker_head.py). Until fitted (`ready` 0) the linear head predicts alone."""

    def __init__(self, inputs: int, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout), nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, NUM_AUS)) for _ in range(heads))
        for name, size, value in (("in_mean", inputs, 0.0), ("in_std", inputs, 1.0), ("lin_mean", NUM_AUS, 0.0),
                                  ("lin_std", NUM_AUS, 1.0)):
            self.register_buffer(name, torch.full((size,), value))
        self.register_buffer("ready", torch.zeros(()))

    def forward(self, speech_window: Tensor) -> Tensor:  # [B, Ws, k, 6] -> [B, 17] z-units
        if speech_window[0].numel() != self.in_mean.numel():
            raise ValueError(f"the formant head reads {self.in_mean.numel()} values per speech window, the batch has "
                             f"{speech_window[0].numel()} (shape {list(speech_window.shape[1:])}): its speech "
                             "windows lack the formant rows (speech_features(..., formants=True))")
        x = (speech_window.flatten(1) - self.in_mean) / self.in_std
        return torch.stack([net(x) for net in self.nets]).mean(0)

    def blend(self, raw: Tensor, speech_window: Tensor, share: float) -> Tensor:  # [B, 17] AU units -> same
        """(1 - share) x the linear head + share x this head, in z-units of the linear head's predictions over
        the stage-1 training frames, returned in its units (calibration rescales them as before)."""
        z = (1 - share) * (raw - self.lin_mean) / self.lin_std + share * self(speech_window)
        return self.lin_mean + self.lin_std * z


class CMMM(nn.Module):
    """Cross-Modal Mapping Module: audio window [B, W, k, D] -> implicit [B, C] and AUs [B, 17];
    AUs -> explicit [B, E]."""

    def __init__(self, audio_cfg: AudioEncoderConfig, cfg: CMMMNetConfig, au_subset: str = "all") -> None:
        super().__init__()
        self.cfg = cfg
        self.audio = AudioEncoder(audio_cfg)
        c = audio_cfg.condition_dim
        if cfg.au_input not in ("speech", "mel", "both"):
            raise ValueError(f"au_input must be speech, mel or both, not {cfg.au_input!r}")
        self.au_head = (mlp(c, cfg.hidden_dim, NUM_AUS, cfg.au_head_layers, LEAKY_SLOPE, cfg.dropout)
                        if cfg.au_input != "speech" else None)
        speech_in = cfg.speech_window * cfg.speech_rows * cfg.speech_dim
        if cfg.speech_head not in ("linear", "frame", "conv"):
            raise ValueError(f"speech_head must be linear, frame or conv, not {cfg.speech_head!r}")
        self.speech_head = None
        if cfg.au_input != "mel":
            self.speech_head = (nn.Linear(speech_in, NUM_AUS) if cfg.speech_head == "linear" else
                                FrameSpeech(cfg.speech_window, cfg.speech_dim) if cfg.speech_head == "frame" else
                                SpeechConv(cfg.speech_window * cfg.speech_rows, cfg.speech_dim, list(cfg.speech_channels),
                                           cfg.speech_kernel, cfg.dropout))
            if cfg.speech_head != "conv":  # a linear map starts at the mean predictor (with init_au_bias): no chance
                nn.init.zeros_(getattr(self.speech_head, "out", self.speech_head).weight)  # correlation with loudness
        self.formant_head = None
        if cfg.formant_share > 0:
            if self.speech_head is None:
                raise ValueError("the formant head sits beside the speech head: au_input must be speech or both")
            self.formant_head = FormantHead(cfg.speech_window * cfg.speech_rows * (cfg.speech_dim + FORMANT_DIM),
                                            cfg.formant_hidden, cfg.formant_heads, cfg.formant_dropout)
        # calibration: (aus - pred_mean) / pred_std * meas_std + meas_mean (identity until set)
        for name, value in (("pred_mean", 0.0), ("pred_std", 1.0), ("meas_mean", 0.0), ("meas_std", 1.0)):
            self.register_buffer(name, torch.full((NUM_AUS,), value))
        self.au_encoder = mlp(NUM_AUS, cfg.hidden_dim, cfg.explicit_dim, cfg.au_encoder_layers, LEAKY_SLOPE)
        self.register_buffer("au_mask", au_subset_mask(au_subset), persistent=False)
        # alignment embeddings: audio frames [B, W, C] and AU windows [B, W, 17], each conv + pool
        w = audio_cfg.window
        self.sync_audio = nn.Sequential(nn.Conv1d(c, cfg.hidden_dim, 3, padding=1), nn.LeakyReLU(0.02),
                                        nn.Flatten(), nn.Linear(cfg.hidden_dim * w, cfg.embed_dim))
        self.sync_visual = nn.Sequential(nn.Conv1d(NUM_AUS, cfg.hidden_dim, 3, padding=1), nn.LeakyReLU(0.02),
                                         nn.Flatten(), nn.Linear(cfg.hidden_dim * w, cfg.embed_dim))
        # per-band normalisation of the audio features (identity statistics; see set_audio_stats)
        self.register_buffer("audio_mean", torch.zeros(audio_cfg.feature_dim))
        self.register_buffer("audio_std", torch.ones(audio_cfg.feature_dim))

    def set_audio_stats(self, mean: Tensor, std: Tensor) -> None:  # [D], [D]
        """Normalise audio features per band with these statistics (a speaker / recording's own)."""
        self.audio_mean.copy_(torch.as_tensor(mean, dtype=self.audio_mean.dtype))
        self.audio_std.copy_(torch.as_tensor(std, dtype=self.audio_std.dtype).clamp_min(1e-3))

    def normalise(self, audio_window: Tensor, speaker: SpeakerStats | None = None) -> Tensor:  # [B, W, k, D] -> same
        """Per-band normalisation by the driving speaker's statistics (None: the training identity's)."""
        if speaker is None or speaker.audio_mean is None:
            return (audio_window - self.audio_mean) / self.audio_std
        return (audio_window - speaker.audio_mean) / speaker.audio_std

    def uninformative(self, audio_window: Tensor, speaker: SpeakerStats | None = None) -> Tensor:
        """An audio window of the same shape that says nothing: every row at the speaker's band mean (0 after
        the normalisation). Zeros would be far outside the features' range (log-mel of silence is -11.5)."""
        mean = self.audio_mean if speaker is None or speaker.audio_mean is None else speaker.audio_mean
        return mean.expand_as(audio_window).clone()

    def forward(self, audio_window: Tensor, speech_window: Tensor | None = None,
                speaker: SpeakerStats | None = None) -> dict[str, Tensor]:
        """audio [B, W, k, D], speech [B, Ws, k, 2] -> {'implicit': [B, C], 'aus': [B, 17] in [0, 5]
        (calibrated), 'raw_aus': before calibration, 'frames': [B, W, C] per-frame audio features}.

        speaker: statistics of a driving speech that is not the training identity's (SpeakerStats)."""
        return self.from_frames(self.audio.encode_frames(self.normalise(audio_window, speaker)), speech_window,
                                speaker)

    def from_frames(self, frames: Tensor, speech_window: Tensor | None = None,
                    speaker: SpeakerStats | None = None) -> dict[str, Tensor]:
        """The implicit feature and the AUs from already encoded frames of the window (see forward)."""
        weights = self.audio.attention(frames)  # [B, W]
        implicit = torch.einsum("bw,bwc->bc", weights, frames)
        logits = 0.0
        if self.au_head is not None:
            logits = logits + self.au_head(implicit)
        if self.speech_head is not None:
            if speech_window is None:
                raise ValueError("this CMMM reads speech features: the batch has no speech_window")
            lin = speech_window[..., :self.cfg.speech_dim]  # energy, flux (formants follow when the head reads them)
            logits = logits + self.speech_head(lin.flatten(1) if isinstance(self.speech_head, nn.Linear) else lin)
        raw = torch.sigmoid(logits) * AU_MAX
        if self.formant_head is not None and bool(self.formant_head.ready):
            raw = self.formant_head.blend(raw, speech_window, self.cfg.formant_share)
        return {"implicit": implicit, "aus": self.calibrated(raw, speaker), "raw_aus": raw, "frames": frames}

    @torch.no_grad()
    def init_au_bias(self, mean_aus: Tensor) -> None:  # [17] mean measured intensities
        """Start from the mean predictor: the AU head's output bias so that a zero input predicts `mean_aus`."""
        p = (torch.as_tensor(mean_aus, dtype=torch.float32) / AU_MAX).clamp(1e-3, 1 - 1e-3)
        head = self.speech_head if self.speech_head is not None else self.au_head[-1]
        getattr(head, "out", head).bias.copy_(torch.log(p / (1 - p)))
        if self.speech_head is not None and self.au_head is not None:
            self.au_head[-1].bias.zero_()

    def calibrated(self, aus: Tensor, speaker: SpeakerStats | None = None) -> Tensor:  # [B, 17] -> [B, 17] in [0, 5]
        """Predictions rescaled from the speaker's prediction statistics (the driving speaker's when given,
        else the training identity's) to the identity's measured ones."""
        if not self.cfg.calibrate:
            return aus
        mean, std = ((self.pred_mean, self.pred_std) if speaker is None or speaker.pred_mean is None
                     else (speaker.pred_mean, speaker.pred_std))
        return ((aus - mean) / std.clamp_min(1e-3) * self.meas_std + self.meas_mean).clamp(0, AU_MAX)

    def set_calibration(self, pred_aus: Tensor | None = None, measured_aus: Tensor | None = None) -> None:
        """Statistics of raw predictions [T, 17] (the speaker being driven) and of measured AUs [T, 17]
        (the identity); either may be given alone."""
        if pred_aus is not None:
            self.pred_mean.copy_(pred_aus.mean(0))
            self.pred_std.copy_(pred_aus.std(0))
        if measured_aus is not None:
            self.meas_mean.copy_(measured_aus.mean(0))
            self.meas_std.copy_(measured_aus.std(0))

    def explicit(self, aus: Tensor) -> Tensor:  # [B, 17] intensities -> [B, E]
        """Explicit feature of AU intensities (the AUs outside the configured subset are zeroed)."""
        return self.au_encoder(aus / AU_MAX * self.au_mask)

    def audio_embedding(self, frames: Tensor) -> Tensor:  # [B, W, C] -> [B, e] unit vectors
        """The window's per-frame features, each weighted by the temporal attention that pools the implicit
        feature (times W: a uniform attention leaves them as they are), embedded for the alignment loss: so
        the alignment trains the implicit feature HMMM reads (frame encoder and attention alike)."""
        weights = self.audio.attention(frames) * frames.shape[1]  # [B, W]
        return F.normalize(self.sync_audio((frames * weights.unsqueeze(-1)).transpose(1, 2)), dim=-1)

    def visual_embedding(self, aus_window: Tensor) -> Tensor:  # [B, W, 17] -> [B, e] unit vectors
        return F.normalize(self.sync_visual((aus_window / AU_MAX).transpose(1, 2)), dim=-1)
