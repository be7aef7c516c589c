"""The built-in demo: everything offline, on a synthetic talking face made on the spot.

synthetic clip -> preprocessed shards -> a small model trained on the CPU -> a video driven by
other (synthetic) speech, with its lip sync measured. Each step is skipped when its output is
already there, so a re-run resumes.

Lip sync reference: the same synthetic face rendered saying the driving speech (its mouth opening
is the generator's loudness envelope of that speech); its sound track drives the model, and the
driven mouth is compared with it exactly as `hm-talker evaluate --drive-video` does, both mouths
measured by the same mediapipe opening trajectory (see hm_talker.metrics.mouth).
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("hm_talker")
DEMO_ENTRIES = {"synthetic_talker.mp4", "identity", "runs", "other_speech.wav", "driven.mp4",
                ".hm-talker-output.json"}  # what the demo writes into its --out


def run_demo(out_dir, seconds: float = 12.0, size: int = 128, steps: int = 300) -> dict:
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess
    from hm_talker.synthetic import make_synthetic_clip, make_synthetic_speech
    from hm_talker.training.fit import fit

    from hm_talker.safe_output import check_writable_dir, write_marker

    out = Path(out_dir).resolve()
    check_writable_dir(out, owned=lambda entries: entries <= DEMO_ENTRIES)  # never a user's folder
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "demo", [n for n in DEMO_ENTRIES if not n.startswith(".")])
    clip_path = out / "synthetic_talker.mp4"
    if not clip_path.is_file():
        clip = make_synthetic_clip(clip_path, seconds=seconds, size=max(256, size), seed=0)
        log.info("made %s (%d frames with sound)", clip_path, clip.num_frames)
    ident = out / "identity"
    m = preprocess([clip_path], ident, PreprocessConfig(size=size, shard_frames=32))
    print(f"demo: preprocessed shards {ident} ({m['num_frames']} frames, "
          f"{m['splits']['train']} train / {m['splits']['val']} val)", flush=True)

    run_dir = out / "runs" / "demo"
    last = run_dir / "checkpoints" / "last.ckpt"
    overrides = demo_overrides(ident, out / "runs", "demo", steps)
    import torch

    done = last.is_file() and torch.load(last, weights_only=True)["global_step"] >= steps
    if not done:
        fit(None, overrides, resume=last.is_file())
    print(f"demo: trained model       {last}", flush=True)

    speech = out / "other_speech.wav"
    if not speech.is_file():
        make_synthetic_speech(speech, seconds=4.0, seed=11)
    reference = out / "reference_saying_other_speech.mp4"
    if not reference.is_file():
        import soundfile as sf

        wav, sr = sf.read(speech, dtype="float32")
        make_synthetic_clip(reference, size=max(256, size), seed=0, speech=wav, sample_rate=sr)
    m = measure_lip_sync(last, reference, out)
    r = m["driven"]
    print(f"demo: driven video        {r['video']} ({r['frames']} frames, rendered at {r['render_fps']:.0f} frames/s)")
    print(f"demo: lip sync            mouth_r {_num(m['mouth_r'])} (95 % interval {_num(m['mouth_r_lo'])} to "
          f"{_num(m['mouth_r_hi'])}), mouth_amp {_num(m['mouth_amp'])} against the "
          f"synthetic face saying the same speech (1 = learned; {out / 'evaluation' / 'metrics.md'})", flush=True)
    return {"clip": clip_path, "identity": ident, "checkpoint": last, "video": Path(r["video"]),
            "reference": reference, "metrics": m}


def demo_overrides(ident: Path, runs: Path, name: str, steps: int) -> list[str]:
    """The demo's fit settings: the default model (experiments/hm_talker.yaml) sized for a CPU minute."""
    return [f"data.root={ident}", f"run.dir={runs}", f"run.name={name}",
            f"trainer.max_steps={steps}", "trainer.val_every=100", "trainer.checkpoint_every=100",
            "data.num_workers=0", "model.gaussians.num_face=1000", "model.gaussians.num_mouth=150",
            "schedule.mouth_warmup_steps=50", "strategy.refine_start=50", "strategy.refine_every=100",
            "strategy.refine_stop=201", "strategy.reset_every=0", "cmmm.pretrain_steps=300"]


def measure_lip_sync(ckpt: Path, reference: Path, out: Path) -> dict:
    """Drive the model with REF's sound into OUT/driven.mp4; score its mouth against REF's (OUT/evaluation),
    exactly as `hm-talker evaluate --drive-video` does."""
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import cross_video
    from hm_talker.evaluation.report import write_evaluation

    model, root, manifest = load_module(ckpt)
    metrics = cross_video(model, root, manifest, reference, out, ckpt=ckpt)
    write_evaluation(metrics, out / "evaluation", {"ckpt": str(ckpt), "drive_video": str(reference),
                                                   "protocol": "cross-video"}, model, ckpt)
    return metrics


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
