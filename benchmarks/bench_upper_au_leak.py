"""How much of a model's lip sync comes from where the upper-face AUs come from (the leak of issue 17).

For each checkpoint: self-driven mouth_r / mouth_amp / mouth_jitter of the held-out frames with the upper-face
AUs taken from the scored frames (the field's protocol), predicted from the audio by CMMM (ours), or held at
the identity's mean (constant); and cross-driven by a reference video (its first --seconds) with the upper AUs replayed from
the training frames (the protocol) or constant. The gap between "frames" and "constant" is what the upper
face carries of the mouth; a model whose mouth follows its audio scores about the same in all columns.
The diagnostic `self-measured` row (lower face driven by the AUs measured on the held-out frames: NOT
audio-driven) is the renderer's upper bound.

    python benchmarks/bench_upper_au_leak.py --ckpt RUN/checkpoints/last.ckpt [...] --ref OTHER_SPEAKER.mp4 \
        [--seconds 20] [--out DIR]

Prints a markdown table. A few minutes per checkpoint on a CPU at 128 px.
"""
from __future__ import annotations

from pathlib import Path

KEYS = ("mouth_r", "mouth_amp", "mouth_jitter")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def measure(ckpt: Path, ref_path: Path, seconds: float, out: Path) -> list[tuple[str, dict]]:
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import cross_reference, reference_video, self_driven

    model, root, manifest = load_module(ckpt, device="cpu")
    ref = reference_video(ref_path, manifest["sample_rate"], seconds)
    rows = []
    for source in ("frames", "predicted", "constant"):
        rows.append((f"self, upper AUs {source}", self_driven(model, root, manifest, upper_aus=source)))
    rows.append(("self-measured (NOT audio-driven: renderer bound)",
                 self_driven(model, root, manifest, measured_lower_face=True)))
    for source in ("frames", "constant"):
        model.upper_au_source = source
        rows.append((f"cross, upper AUs {'replayed' if source == 'frames' else source}",
                     cross_reference(model, root, manifest, ref, out / f"cross_{source}.mp4")))
    model.upper_au_source = "frames"
    rows.append(("cross, deaf (every audio input silenced)",
                 cross_reference(model, root, manifest, ref, out / "cross_deaf.mp4", silent=True)))
    return rows


def main() -> None:
    from driven_args import driven_checkpoints

    args, checkpoints = driven_checkpoints(__doc__, "upper_au_leak_")
    print("| checkpoint | protocol | mouth_r | mouth_amp | mouth_jitter | psnr_face |")
    print("|---|---|---:|---:|---:|---:|")
    for ckpt, name, d in checkpoints:
        for protocol, m in measure(ckpt, args.ref, args.seconds, d):
            cells = " | ".join(_fmt(m.get(k)) for k in (*KEYS, "psnr_face"))
            print(f"| {name} | {protocol} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
