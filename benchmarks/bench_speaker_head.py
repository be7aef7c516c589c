"""Does a nonlinear head fitted on the identity's own speech help once another speaker drives the model?

The product's audio -> mouth map is trained on one identity's clip plus other speakers (stage 1 over
every identity the user has) and then driven by anyone. A nonlinear predictor follows the identity's own
mouth better (bench_audio_mouth.py: an mlp on energy and formants reads long1's own mouth at 0.60 against
0.49), so one could add one beside the linear map that transfers. This benchmark measures that mixture
the way the product uses it:

* the identity is a long clip; the map trains on its first 10/11 and on the five face clips;
* ``self``: its last 1/11 (its own held-out speech, the self-driven protocol);
* ``driven``: each long clip of ANOTHER speaker, the map's prediction from that speaker's sound against
  that speaker's own mouth (what a driven video can follow at best; long2 and long3 are both Obama, so
  neither drives the other);
* prediction = (1 - share) x z(ridge on energy) + share x z(mlp ensemble on FEATURE) (z: z-scored over
  the scored frames, which Pearson r does not see; the spread is not measured here).

    python benchmarks/bench_speaker_head.py [--real ../shared/data/real] [--work DIR]
        [--features energy energy+formants] [--shares 0 0.25 0.5 0.75 1] [--seeds 3]

Skips with a message when the clips are absent. Under a minute on a 2-core machine. Every clip is put in step
with its mouth as preprocessing does (``hm_talker/preprocess/av_offset.py``: long3's sound is 6 frames
late). Measured there (energy ridge alpha 1e4, mlp 3 seeds):

| head feature | mlp share | self r, mean of 3 | driven r, mean of 4 | long1 self | long1 <- long2 | long1 <- long3 |
|---|---:|---:|---:|---:|---:|---:|
| (the linear map alone) | 0 | 0.62 | 0.31 | 0.34 | 0.52 | 0.31 |
| energy | 0.5 | 0.65 | 0.32 | 0.41 | 0.54 | 0.31 |
| energy | 1 | 0.64 | 0.29 | 0.46 | 0.48 | 0.29 |
| energy+formants | 0.25 | 0.66 | 0.33 | 0.43 | 0.53 | 0.36 |
| energy+formants | 0.5 | 0.69 | 0.35 | 0.52 | 0.51 | 0.41 |
| energy+formants | 1 | 0.69 | 0.31 | 0.60 | 0.39 | 0.40 |

(driven, the linear map: long1 <- long2 0.52, long1 <- long3 0.31, long2 <- long1 0.20, long3 <- long1 0.19.)

Before long3 was put in step, the heads seemed to cost the speakers the identity never heard (mean driven
0.29 -> 0.26, long1 <- long3 0.25 -> 0.12): scored against a mouth 240 ms ahead of its own sound, a head
that follows the sound more closely looked worse. In step, half a formant MLP lifts both (the README,
CMMM section, says what the model does with it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_audio_mouth as bam  # noqa: E402

RIDGE_ALPHA = 1e4  # the linear map's shrinkage (bench_audio_mouth's best cross-speaker ridge)


def zscore(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / max(float(v.std()), 1e-9)


def measure(clips: dict, feature: str, shares: list[float], seeds: int) -> list[tuple]:
    """(identity, test, share, r) for every long identity, its self split and each other speaker's long clip."""
    table = bam.feature_table()
    lin_x = {c: bam.windows(table["energy"](d["audio"], len(d["opening"])), 16) for c, d in clips.items()}
    head_x = lin_x if feature == "energy" else {
        c: bam.windows(table[feature](d["audio"], len(d["opening"])), 16) for c, d in clips.items()}
    y = {c: zscore(d["opening"]) for c, d in clips.items()}
    faces = [c for c in clips if c not in bam.LONG]
    rows = []
    for ident in (c for c in bam.LONG if c in clips):
        n = len(y[ident])
        cut = n - int(round(n / 11))
        train = [(ident, slice(0, cut))] + [(c, slice(None)) for c in faces]
        cat = lambda xs: np.concatenate([xs[c][s] for c, s in train])  # noqa: E731
        lin = bam.fit_ridge(cat(lin_x), cat(y), RIDGE_ALPHA)
        mlps = [bam.fit_mlp(cat(head_x), cat(y), seed=s) for s in range(seeds)]
        tests = [("self", ident, slice(cut, n))] + [
            (f"<- {c}", c, slice(None)) for c in bam.LONG
            if c in clips and clips[c]["speaker"] != clips[ident]["speaker"]]
        for label, clip, sl in tests:
            a = zscore(lin(lin_x[clip][sl]))
            b = zscore(np.mean([m(head_x[clip][sl]) for m in mlps], 0))
            for share in shares:
                rows.append((ident, label, share, bam.pearson((1 - share) * a + share * b, y[clip][sl]) or 0.0))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=bam.REPO.parent / "shared" / "data" / "real")
    ap.add_argument("--work", type=Path, default=None, help="landmark cache (default: a temporary folder)")
    ap.add_argument("--features", nargs="+", default=["energy", "energy+formants"],
                    help=f"the nonlinear head's input: any of {', '.join(bam.feature_table())}")
    ap.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                    help="weights of the nonlinear head in the mixture (0 = the linear map alone)")
    ap.add_argument("--seeds", type=int, default=3, help="mlps averaged per head")
    args = ap.parse_args(argv)
    if not (args.real / bam.LONG["long1"][0]).is_file():
        print(f"skipped: no real clips under {args.real}")
        return 0
    features = bam.usable_features(args.features)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clips = bam.load_clips(args.real, work)
        print("| head feature | identity | speech | " + " | ".join(f"share {s:g}" for s in args.shares) + " |")
        print("|---|---|---|" + "---:|" * len(args.shares))
        for f in features:
            rows = measure(clips, f, args.shares, args.seeds)
            for ident, label in dict.fromkeys((r[0], r[1]) for r in rows):
                rs = [r[3] for r in rows if r[0] == ident and r[1] == label]
                print(f"| {f} | {ident} | {label} | " + " | ".join(f"{v:.2f}" for v in rs) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
