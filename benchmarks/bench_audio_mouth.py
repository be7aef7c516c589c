"""Which audio feature predicts the mouth opening of a speaker the predictor never heard?

Reads the real clips of ``../shared/data/real`` (the long ones and the five short face clips),
runs the landmark pass of preprocessing on them (cached in ``--work``), and measures, per video
frame, the mouth opening = inner-lip gap / inter-ocular distance (mediapipe points 13-14 over
33-263), z-scored per clip. Each (feature, predictor) pair maps a window of audio features around
the frame to that opening and is scored with Pearson r and the spread ratio std(pred)/std(real):

* ``self``: trained on the first 10/11 of a long clip, tested on its last 1/11 (self-driven);
* ``cross``: trained on every clip of the OTHER speakers, tested on the whole long clip
  (leave-one-speaker-out; long2 and long3 are both Obama, so neither trains the other's test).

Predictors: ridge on standardised inputs (alpha 1e3, 1e4, 1e5) and a 2-layer MLP (32 hidden, 15
epochs, dropout). Features: see ``hm_talker.preprocess.speech_features`` and ``phones``
(pocketsphinx, optional: ``pip install 'hm-talker[phones]'``) and ``formants`` (Praat's tracker,
praat-parselmouth, a dependency of hm-talker).

``spread`` is the raw ratio; ``cal`` is the ratio after dividing the prediction by its std on the
training frames (what a consumer that rescales its output to the training spread would see).

    python benchmarks/bench_audio_mouth.py [--real ../shared/data/real] [--work DIR]
        [--features mel cmvn ...] [--predictors ridge1e3 ridge1e4 ridge1e5 mlp] [--window 16]

Skips with a message when the clips are absent. About 4.5 minutes on a busy 2-core machine
(1.5 min of CPU), phones included. Measured there (mean over the three long clips, window 16):
energy + ridge1e4 self r 0.55, cross r 0.33 (long1 0.19, long2 0.53, long3 0.26); mel + ridge1e3
cross r 0.14, mel + ridge1e5 0.23, cmvn + ridge1e5 0.23, mel + mlp 0.09, phones+energy <= 0.23;
bands (where the energy sits: five band energies) + ridge1e4 cross 0.26 (long1 0.22, long2 0.46, long3 0.11),
energy+bands the same: a spectral shape helps one speaker's mouth a little and costs the others more.
formants (z-scored log F1-F3 and voicing) + ridge1e4 cross 0.22 (long2 0.34), energy+formants + ridge1e4
0.27 (long2 0.44), + ridge1e5 0.31, + mlp 0.14: F1 reads the jaw of a vowel, yet an unheard speaker's
mouth follows its loudness better; only self r rises (energy+formants + mlp 0.63, long1 0.60 against 0.49).

Those numbers were measured with long3's sound 240 ms late. Every clip is now put in step with its mouth as
preprocessing does (``hm_talker/preprocess/av_offset.py``; the shifted clips are printed first), and the
ranking changes: cross r energy + ridge1e4 0.34 (long1 0.19, long2 0.53, long3 0.30), mel + ridge1e5 0.37
(0.23, 0.45, 0.43), cmvn + ridge1e5 0.37, bands + ridge1e4 0.39, energy+bands + ridge1e4 0.40 (0.25, 0.47,
0.47), energy+formants + ridge1e4 0.37; self r 0.59-0.61 for all of them.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hm_talker.metrics.correlation import pearson
from hm_talker.metrics.mouth import mouth_opening  # the opening every lip-sync number uses

REPO = Path(__file__).resolve().parents[1]
LONG = {"long1": ("long1_fr_30fps.mp4", "fr"), "long2": ("long2_obama_30fps.mp4", "obama"),
        "long3": ("long3_obama.mp4", "obama")}
SHORT = {f"face{i}": (f"face{i}{'_30fps' if i == 4 else ''}.mp4", f"face{i}") for i in range(1, 6)}


def load_clips(real: Path, work: Path) -> dict:
    """name -> dict(speaker, audio [S], opening [T]); the landmark pass is cached in `work`."""
    from hm_talker.preprocess.analysis import analyse_clip
    from hm_talker.preprocess.av_offset import in_sync, measure
    from hm_talker.preprocess.config import PreprocessConfig

    cfg = PreprocessConfig()
    out = {}
    for name, (file, speaker) in {**LONG, **SHORT}.items():
        src = real / file
        if not src.is_file():
            continue
        cache = work / f"{name}.npz"
        if not cache.is_file():
            c = analyse_clip(src, None, cfg)
            np.savez(cache, landmarks=c.landmarks, audio=c.audio)
        z = np.load(cache)
        off = measure(z["landmarks"], z["audio"], cfg)  # preprocessing's sync correction (auto)
        landmarks, audio = in_sync(z["landmarks"], z["audio"], off.applied, cfg.sample_rate, cfg.fps)
        out[name] = {"speaker": speaker, "audio": audio, "opening": mouth_opening(landmarks), "av_offset": off.applied}
    shifted = {n: c["av_offset"] for n, c in out.items() if c["av_offset"]}
    print(f"sound shifted to match the mouth as preprocess does (frames): {shifted or 'none'}", flush=True)
    return out


# ---- features: (audio [S], frames T) -> [T, k, D] ----------------------------------------------

def _mel(audio, n):
    from hm_talker.preprocess.audio_features import log_mel
    from hm_talker.preprocess.config import PreprocessConfig

    c = PreprocessConfig()
    return log_mel(audio, n, c.sample_rate, c.fps, c.n_mels, c.mel_hop, c.mel_win, c.mel_fmin, c.mel_fmax)


BAND_EDGES_HZ = (55, 300, 800, 1500, 3000, 7600)  # F0 / F1 / F1-F2 / F2-F3 / fricatives (the mel range's ends)


def _bands(audio, n):
    """[T, k, 5]: log energy of five frequency bands of the log-mel (edges BAND_EDGES_HZ), each z-scored over
    the utterance after the relative floor: where the energy sits, not only how much there is."""
    import librosa

    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.speech_features import relative_floor

    c = PreprocessConfig()
    mel = _mel(audio, n)
    t, k, d = mel.shape
    centres = librosa.mel_frequencies(d + 2, fmin=c.mel_fmin, fmax=c.mel_fmax)[1:-1]
    power = np.exp(relative_floor(mel).reshape(t * k, d).astype(np.float64))
    bands = np.stack([np.log(power[:, (centres >= lo) & (centres < hi)].sum(1) + 1e-5)
                      for lo, hi in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:])], 1)
    bands = (bands - bands.mean(0)) / np.maximum(bands.std(0), 1e-6)
    return bands.reshape(t, k, -1).astype(np.float32)


def _phones(audio, n):
    from hm_talker.preprocess.phones import phone_features

    return phone_features(audio, n, 16000, 25, 160)


def _formants(audio, n):
    from hm_talker.preprocess.formants import formant_features

    return formant_features(audio, n, 16000, 25, 160)


# features that need an optional package: (name part, module, pip package)
OPTIONAL_FEATURES = (("phones", "pocketsphinx", "pocketsphinx"),)


def usable_features(features: list[str]) -> list[str]:
    """FEATURES less those whose optional package is missing (said on stderr)."""
    for kind, module, package in OPTIONAL_FEATURES:
        if any(kind in f for f in features) and importlib.util.find_spec(module) is None:
            print(f"{package} missing: {kind} features left out", file=sys.stderr)
            features = [f for f in features if kind not in f]
    return features


def feature_table():
    from hm_talker.preprocess import speech_features as sf

    mel = lambda a, n: sf.mouth_audio_features(_mel(a, n), "mel")  # noqa: E731
    return {
        "mel": mel,
        "cmvn": lambda a, n: sf.mouth_audio_features(_mel(a, n), "cmvn"),
        "cmvn+delta": lambda a, n: sf.with_deltas(sf.cmvn(_mel(a, n))),
        "energy": lambda a, n: sf.mouth_audio_features(_mel(a, n), "energy"),
        "energy+cmvn": lambda a, n: sf.mouth_audio_features(_mel(a, n), "energy+cmvn"),
        "bands": _bands,
        "energy+bands": lambda a, n: np.concatenate([sf.frame_energy(_mel(a, n)), _bands(a, n)], -1),
        "phones": _phones,
        "phones+energy": lambda a, n: np.concatenate([_phones(a, n), sf.frame_energy(_mel(a, n))], -1),
        "formants": _formants,
        "energy+formants": lambda a, n: np.concatenate([sf.frame_energy(_mel(a, n)), _formants(a, n)], -1),
    }


def windows(feats: np.ndarray, w: int) -> np.ndarray:
    from hm_talker.preprocess.speech_features import mouth_window_features

    return mouth_window_features(feats, w)


# ---- predictors: fit(X, y) -> predict(X) -------------------------------------------------------

def fit_ridge(x, y, alpha: float = 1e4):
    """Ridge on standardised inputs; the dual form when there are more inputs than frames."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    yc = y - y.mean()
    if xs.shape[1] <= xs.shape[0]:
        w = np.linalg.solve(xs.T @ xs + alpha * np.eye(xs.shape[1]), xs.T @ yc)
    else:
        w = xs.T @ np.linalg.solve(xs @ xs.T + alpha * np.eye(xs.shape[0]), yc)
    b = y.mean()
    return lambda z: ((z - mu) / sd) @ w + b


def fit_mlp(x, y, hidden: int = 32, epochs: int = 15, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny net: threads only contend on a shared machine
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy(((x - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(y.astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                              torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(128):
            loss = torch.nn.functional.mse_loss(net(xt[idx]).squeeze(1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def predict(z):
        with torch.no_grad():
            return net(torch.from_numpy(((z - mu) / sd).astype(np.float32))).squeeze(1).numpy()
    return predict


PREDICTORS = {"ridge1e3": lambda x, y: fit_ridge(x, y, 1e3), "ridge1e4": fit_ridge,
              "ridge1e5": lambda x, y: fit_ridge(x, y, 1e5), "mlp": fit_mlp}


def score(pred, real, train_pred_std):
    r = pearson(pred, real) or 0.0
    spread = float(pred.std() / real.std())
    return r, spread, spread / max(float(train_pred_std), 1e-9)


def protocols(clips: dict):
    """(protocol, test clip, train [(clip, slice)], test slice) for every long clip present."""
    for name in LONG:
        if name not in clips:
            continue
        n = len(clips[name]["opening"])
        cut = n - int(round(n / 11))
        yield "self", name, [(name, slice(0, cut))], slice(cut, n)
        others = [(o, slice(None)) for o in clips if clips[o]["speaker"] != clips[name]["speaker"]]
        yield "cross", name, others, slice(None)


def run(clips, feature_names, predictor_names, window):
    table = feature_table()
    rows = []
    for fname in feature_names:
        t0 = time.perf_counter()
        feats = {c: windows(table[fname](d["audio"], len(d["opening"])), window) for c, d in clips.items()}
        targets = {c: (d["opening"] - d["opening"].mean()) / d["opening"].std() for c, d in clips.items()}
        for pname in predictor_names:
            for proto, test, train, sl in protocols(clips):
                x = np.concatenate([feats[c][s] for c, s in train])
                y = np.concatenate([targets[c][s] for c, s in train])
                predict = PREDICTORS[pname](x, y)
                pred = predict(feats[test][sl])
                r, spread, cal = score(pred, targets[test][sl], predict(x).std() / y.std())
                rows.append((fname, pname, proto, test, r, spread, cal))
        print(f"# {fname}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def print_table(rows):
    print("| feature | predictor | protocol | test clip | r | spread | cal |")
    print("|---|---|---|---|---|---|---|")
    for f, p, proto, test, r, s, c in rows:
        print(f"| {f} | {p} | {proto} | {test} | {r:.2f} | {s:.2f} | {c:.2f} |")
    print("\nmean over test clips:\n")
    print("| feature | predictor | self r | cross r | cross spread | cross cal |")
    print("|---|---|---|---|---|---|")
    keys = sorted({(f, p) for f, p, *_ in rows}, key=lambda k: [r[:2] for r in rows].index(k))
    for f, p in keys:
        sel = lambda proto: [r for r in rows if r[0] == f and r[1] == p and r[2] == proto]  # noqa: E731
        m = lambda rs, i: np.mean([r[i] for r in rs])  # noqa: E731
        print(f"| {f} | {p} | {m(sel('self'), 4):.2f} | {m(sel('cross'), 4):.2f} | "
              f"{m(sel('cross'), 5):.2f} | {m(sel('cross'), 6):.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--work", type=Path, default=None, help="landmark cache (default: a temporary folder)")
    ap.add_argument("--features", nargs="+", default=["mel", "cmvn", "energy", "phones+energy"],
                    help=f"any of {', '.join(feature_table())}")
    ap.add_argument("--predictors", nargs="+", default=list(PREDICTORS))
    ap.add_argument("--window", type=int, default=16, help="video frames of audio context per prediction")
    args = ap.parse_args(argv)
    if not all((args.real / f).is_file() for f, _ in LONG.values()):
        print(f"skipped: the long real clips ({', '.join(f for f, _ in LONG.values())}) are not under "
              f"{args.real}", file=sys.stderr)
        return 0
    args.features = usable_features(args.features)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clips = load_clips(args.real, work)
        listing = ", ".join(f"{c} ({len(d['opening'])} frames)" for c, d in clips.items())
        print(f"clips: {listing}; "
              f"window {args.window} frames\n")
        print_table(run(clips, args.features, args.predictors, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
