"""FeatureWindowDataModule: CMMM's training data, the per-frame audio features and AUs of one or
several identities (their features.npz, no images), with time-shifted audio windows as negatives.

Each sample of frame t: the audio-feature window around t [W, k, D], the AUs of t [17], the AU
window around t [W, 17], and the audio span around t wide enough for every shift s in `shifts`
[W + 2M, k, D] with M = max |s| (the alignment loss's negatives are the windows of this span
shifted by s; encoding the span once costs (W + 2M) frames instead of (1 + S) W). Frames past a
clip's edges repeat its edge frame. Every identity's audio
features are normalised per band by that identity's own statistics (speaker normalisation: mel
carries the speaker, see DESIGN.md section 9), the same rule inference applies to driving speech.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from hm_talker.data.identity import load_manifest
from hm_talker.data.windows import Windows, band_stats, speech_features


class _Identity:
    def __init__(self, root: Path, window: int, normalise: bool, speech_window: int, formants: bool | None = None):
        self.manifest = load_manifest(root)
        with np.load(root / "features.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("audio", "aus", "clip_ids", "speech", "formants") if k in f.files}
        audio, self.aus = arrays["audio"].astype(np.float32), arrays["aus"].astype(np.float32)
        speech = speech_features(self.manifest, arrays, speech_window, formants)
        if normalise:
            mean, std = band_stats(audio)
            audio = (audio - mean) / std
        self.audio = audio
        self.windows = Windows(audio, self.aus, arrays["clip_ids"], window, *speech)
        self.num_train = int(self.manifest["splits"]["train"])


class FeatureWindows(torch.utils.data.Dataset):
    """(identity, frame) pairs of one split; see the module docstring for a sample's fields."""

    def __init__(self, idents: list[_Identity], split: str, shifts: list[int]):
        self.idents, self.shifts = idents, list(shifts)
        self.items = [(i, t) for i, d in enumerate(idents)
                      for t in (range(d.num_train) if split == "train" else range(d.num_train, len(d.aus)))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int) -> dict:
        i, t = self.items[j]
        d = self.idents[i]
        idx = d.windows.indices(t)
        m = max((abs(s) for s in self.shifts), default=0)
        span = np.clip(np.arange(idx[0] - m, idx[0] + len(idx) + m), d.windows.lo[t], d.windows.hi[t])
        sample = d.windows.add({"frame": t, "identity": i})  # audio_window, aus_window (, speech_window)
        sample["aus"] = torch.from_numpy(d.aus[t])  # [17]
        sample["audio_span"] = torch.from_numpy(d.audio[span])  # [W + 2M, k, D]
        return sample


class FeatureWindowDataModule(L.LightningDataModule):
    """Train: the train frames of every identity, shuffled (seeded); val: their held-out tails."""

    def __init__(self, roots: list[str], batch_size: int = 64, window: int = 8, shifts: list[int] = (),
                 normalise: bool = True, seed: int = 0, num_workers: int = 0, speech_window: int = 16,
                 formants: bool | None = None):
        super().__init__()
        self.speech_window, self.formants = speech_window, formants  # formant rows: True (required), None (when stored)
        self.roots = [Path(r) for r in roots]
        self.batch_size, self.window, self.shifts = batch_size, window, list(shifts)
        self.normalise, self.seed, self.num_workers = normalise, seed, num_workers

    def setup(self, stage: str | None = None):
        if not hasattr(self, "idents"):
            self.idents = [_Identity(r, self.window, self.normalise, self.speech_window, self.formants)
                           for r in self.roots]

    def loader(self, split: str, shuffle: bool):
        """Batches of one split (shuffled: seeded, last partial batch dropped)."""
        gen = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(FeatureWindows(self.idents, split, self.shifts), self.batch_size,
                                           shuffle=shuffle, generator=gen, num_workers=self.num_workers,
                                           drop_last=shuffle)

    def train_dataloader(self):
        return self.loader("train", True)

    def val_dataloader(self):
        return self.loader("val", False)
