"""`hm-talker evaluate`: load, run one protocol (hm_talker.evaluation.protocols), write the report.

    --ckpt CKPT --data DIR            self-driven: the identity's held-out frames
    --ckpt CKPT --drive-video REF.mp4 cross-driven: REF's sound, REF's real mouth as the reference
    --ckpt CKPT --audio SPEECH        cross-driven by speech alone: sync and motion only
    --pred PRED --target TARGET       any two videos / images / frame folders
    --paired A B                      two of the above (their OUT folders) on one reference mouth:
                                      B's mouth_r minus A's, with a paired 95 % interval

Every protocol writes OUT/metrics.json and OUT/metrics.md; the checkpoint protocols also
OUT/summary.json and a W&B run of their own; with a reference mouth, OUT/mouth.npz (for --paired).
"""
from __future__ import annotations

from hm_talker.constants import UPPER_AU_SOURCES
from hm_talker.data.clips import CHUNK_FRAMES
from hm_talker.errors import InputError


def evaluate_self(ckpt, data, out_dir, syncnet_weights=None, device: str = "auto",
                  lower_face: str = "audio", upper_aus: str = "predicted") -> dict:
    """Self-driven; lower_face="measured" is the diagnostic protocol `self-measured` (not audio-driven);
    upper_aus: where the eye and brow AUs come from (protocols.self_driven)."""
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import self_driven
    from hm_talker.evaluation.report import write_evaluation

    model, root, manifest = load_module(ckpt, data, device)
    measured = lower_face == "measured"
    metrics = self_driven(model, root, manifest, syncnet_weights, measured, upper_aus)
    protocol = "self-measured" if measured else "self"
    inputs = {"ckpt": str(ckpt), "data": str(root), "protocol": protocol}
    if not measured:
        inputs["upper_aus"] = upper_aus
    write_evaluation(metrics, out_dir, inputs, model, ckpt)
    return metrics


def evaluate_drive_video(ckpt, ref_path, out_dir, syncnet_weights=None, device: str = "auto") -> dict:
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import cross_video
    from hm_talker.evaluation.report import write_evaluation

    model, root, manifest = load_module(ckpt, device=device)
    metrics = cross_video(model, root, manifest, ref_path, out_dir, syncnet_weights, ckpt)
    write_evaluation(metrics, out_dir, {"ckpt": str(ckpt), "drive_video": str(ref_path), "protocol": "cross-video"},
                     model, ckpt)
    return metrics


def evaluate_cross(ckpt, audio_path, out_dir, syncnet_weights=None, device: str = "auto") -> dict:
    from hm_talker.driving.checkpoint import load_module
    from hm_talker.evaluation.protocols import cross_audio
    from hm_talker.evaluation.report import write_evaluation

    model, root, manifest = load_module(ckpt, device=device)
    metrics = cross_audio(model, root, manifest, audio_path, out_dir, syncnet_weights, ckpt)
    write_evaluation(metrics, out_dir, {"ckpt": str(ckpt), "audio": str(audio_path), "protocol": "cross-audio"},
                     model, ckpt)
    return metrics


def evaluate_pair(pred_path, target_path, out_dir, syncnet_weights=None, chunk: int = CHUNK_FRAMES) -> dict:
    from hm_talker.evaluation.protocols import pair
    from hm_talker.evaluation.report import write_evaluation

    metrics = pair(pred_path, target_path, syncnet_weights, chunk)
    write_evaluation(metrics, out_dir, {"pred": str(pred_path), "target": str(target_path), "protocol": "pair"})
    return metrics


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="face-region PSNR/SSIM/LPIPS, lip sync (mouth_r, ...), LMD/AUE/Sync: "
                                        "self-driven, cross-driven or any pair",
                       description="--ckpt CKPT --data DIR (self-driven) | --ckpt CKPT --drive-video REF.mp4 "
                                   "(cross-driven, REF's real mouth as reference) | --ckpt CKPT --audio SPEECH "
                                   "(cross-driven, no reference) | --pred PRED --target TARGET (any two clips) | "
                                   "--paired A B (two evaluations of one reference mouth: B - A)")
    p.add_argument("--ckpt", help="trained checkpoint")
    p.add_argument("--data", help="with --ckpt: preprocessed identity whose held-out frames to render")
    p.add_argument("--audio", help="with --ckpt: other speech to drive the model with")
    p.add_argument("--drive-video", help="with --ckpt: a real video of someone speaking (with sound): its "
                                         "sound drives the model, its mouth is the reference")
    p.add_argument("--pred", help="video, image or folder of frames")
    p.add_argument("--target", help="video, image or folder of frames")
    p.add_argument("--paired", nargs=2, metavar=("A", "B"),
                   help="two evaluate OUT folders scored against the same reference mouth: B's mouth_r minus A's "
                        "with a paired 95 %% interval (narrower than comparing their own intervals)")
    p.add_argument("--out", required=True, help="folder for metrics.json and metrics.md")
    p.add_argument("--syncnet-weights", default=None, help="syncnet_v2.model (or $HM_TALKER_SYNCNET_WEIGHTS)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="with --ckpt: where to render (auto: CUDA when present, with the trained backend)")
    p.add_argument("--lower-face", default="audio", choices=["audio", "measured"],
                   help="with --ckpt --data: measured = the diagnostic protocol self-measured, NOT audio-driven: the "
                        "AUs measured on the held-out frames drive the lower face (the renderer's upper bound)")
    p.add_argument("--upper-aus", default="predicted", choices=UPPER_AU_SOURCES,
                   help="with --ckpt --data: the eye and brow AUs of the held-out frames: predicted from their sound "
                        "by CMMM (default), the identity's mean, or the scored frames' own (frames: they carry the "
                        "mouth, so the score is not a clean lip-sync score; for comparison with the field's protocol)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from hm_talker.safe_output import output_dir

    with output_dir(args.out, "evaluate"):  # OUT: new, empty or ours; nothing left on failure
        return _evaluate(args)


def _evaluate(args) -> int:
    from hm_talker.data.clips import bound_heap_growth

    bound_heap_growth()  # memory must not grow with the clip's length
    given = {k for k in ("ckpt", "data", "audio", "drive_video", "pred", "target", "paired") if getattr(args, k)}
    if "paired" in given:
        if given != {"paired"} or args.lower_face != "audio" or args.upper_aus != "predicted":
            raise InputError(None, "--paired A B compares two finished evaluations: give it alone (with --out)")
        from hm_talker.evaluation.paired import evaluate_paired, verdict

        print(f"{args.out}/metrics.json: {verdict(evaluate_paired(*args.paired, args.out))}")
        return 0
    if args.lower_face != "audio" and given != {"ckpt", "data"}:
        raise InputError(None, "--lower-face measured is a self-driven diagnostic: give --ckpt and --data")
    if args.upper_aus != "predicted" and (given != {"ckpt", "data"} or args.lower_face != "audio"):
        raise InputError(None, "--upper-aus is for the audio-driven self-driven protocol: give --ckpt and --data")
    if given == {"ckpt", "data"}:
        m = evaluate_self(args.ckpt, args.data, args.out, args.syncnet_weights, args.device, args.lower_face,
                          args.upper_aus)
    elif given == {"ckpt", "drive_video"}:
        m = evaluate_drive_video(args.ckpt, args.drive_video, args.out, args.syncnet_weights, args.device)
    elif given == {"ckpt", "audio"}:
        m = evaluate_cross(args.ckpt, args.audio, args.out, args.syncnet_weights, args.device)
    elif given == {"pred", "target"}:
        m = evaluate_pair(args.pred, args.target, args.out, args.syncnet_weights)
    else:
        raise InputError(None, "evaluate takes --ckpt with one of --data, --drive-video or --audio, "
                               "or --pred with --target")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float))
    print(f"{args.out}/metrics.json: {shown}")
    return 0
