"""Phone features from speech with pocketsphinx's English acoustic model (shipped in its wheel).

pocketsphinx's Python API gives no frame-level phone posteriors, only the best phone sequence
with segment boundaries (10 ms frames): an alignment. `phone_features` decodes the whole
utterance in allphone mode (the wheel's phone bigram model, no words) and returns, for every 10 ms
feature row, a one-hot of the recognised phone. That is speaker-free by construction (the
acoustic model was trained on many speakers) and needs no download. Non-English speech still
decodes to the nearest English phones.
"""
from __future__ import annotations

import os

import numpy as np

from hm_talker.errors import InputError

# CMU phone set of the en-us model; silence and the filler/noise phones map to SIL.
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
          "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
          "UH", "UW", "V", "W", "Y", "Z", "ZH")
_INDEX = {p: i for i, p in enumerate(PHONES)}
DITHER = 3e-4  # std of the noise added before decoding (about 10 int16 steps, -70 dBFS)


def _decoder(sr: int, hop: int):
    try:
        import pocketsphinx as ps
    except ImportError:
        raise InputError(None, "phone features need pocketsphinx: pip install pocketsphinx") from None
    mp = ps.get_model_path()
    cfg = ps.Config(hmm=os.path.join(mp, "en-us", "en-us"),
                    allphone=os.path.join(mp, "en-us", "en-us-phone.lm.bin"), lm=None, dict=None,
                    samprate=sr, frate=sr // hop, loglevel="FATAL", backtrace=False)
    return ps.Decoder(cfg)


def phone_segments(audio: np.ndarray, sr: int, hop: int, dither: float = DITHER) -> list[tuple[str, int, int]]:
    """[S] float audio in [-1, 1] -> [(phone, first row, last row)] in rows of `hop` samples.

    A fixed-seed noise of std `dither` (full scale 1) is added first: digitally silent stretches
    otherwise decode as a fricative (ZH) instead of silence.
    """
    dec = _decoder(sr, hop)
    noise = np.random.default_rng(0).normal(scale=dither, size=len(audio))
    pcm = (np.clip(audio + noise, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    return [(s.word, s.start_frame, s.end_frame) for s in dec.seg()]


def phone_features(audio: np.ndarray, num_frames: int, sr: int, fps: int, hop: int) -> np.ndarray:
    """[S] audio -> [num_frames, k, len(PHONES)] one-hot of the recognised phone per `hop` row.

    Row j of frame t is the decoder's row nearest to time (t + j / k) / fps, k rows per frame as
    in `audio_features.log_mel` (k = 4 for 10 ms rows; at 25 fps row t*k + j itself). Rows the
    decoder did not reach are silence.
    """
    from hm_talker.preprocess.audio_features import frame_start, row_positions, rows_per_frame

    k = rows_per_frame(sr / hop)
    y = np.zeros(frame_start(num_frames, sr, fps), dtype=np.float32)
    y[: min(len(audio), len(y))] = audio[: len(y)]
    n_rows = len(y) // hop + 1
    idx = np.zeros(n_rows, np.int64)  # SIL
    for phone, start, end in phone_segments(y, sr, hop):
        idx[max(0, start): min(n_rows, end + 1)] = _INDEX.get(phone, 0)
    base, frac = row_positions(num_frames, k, sr, fps, hop)
    rows = idx[np.minimum(base + (frac >= 0.5), n_rows - 1)]  # one-hot rows: the nearest, not a blend
    out = np.zeros((len(rows), len(PHONES)), np.float32)
    out[np.arange(len(rows)), rows] = 1.0
    return out.reshape(num_frames, k, len(PHONES))
