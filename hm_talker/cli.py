"""The `hm-talker` command: one subcommand per job; bad input is one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import logging
import sys

from hm_talker.errors import InputError


def _add_preprocess(sub):
    p = sub.add_parser("preprocess", help="videos of one identity -> WebDataset shards")
    p.add_argument("videos", nargs="+", help="mp4 file(s) or folder(s) of one identity")
    p.add_argument("--out", required=True, help="output directory (one per identity)")
    p.add_argument("--audio", help="speech file to use instead of the video's sound track")
    p.add_argument("--size", type=int, default=512, help="output frame side in pixels (default 512)")
    p.add_argument("--audio-features", default="mel", choices=["mel", "hubert", "wav2vec2"])
    p.add_argument("--audio-model", default="", help="local HuBERT / wav2vec2 weights folder")
    p.add_argument("--openface-csv", default="", help="OpenFace CSV whose AU*_r columns to import")
    p.add_argument("--image-format", default="jpg", choices=["jpg", "png"])
    p.add_argument("--shard-frames", type=int, default=200, help="frames per shard at most")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other preprocessing setting (see hm_talker/preprocess/config.py)")
    p.set_defaults(func=_run_preprocess)


def _run_preprocess(args) -> int:
    from omegaconf import OmegaConf

    from hm_talker.config.loading import load_structured
    from hm_talker.preprocess.config import PreprocessConfig
    from hm_talker.preprocess.pipeline import preprocess

    defaults = PreprocessConfig(size=args.size, audio_features=args.audio_features, audio_model=args.audio_model,
                                openface_csv=args.openface_csv, image_format=args.image_format,
                                shard_frames=args.shard_frames)
    cfg = OmegaConf.to_object(load_structured(defaults, None, args.overrides))  # the loader of every command
    if args.size < 32:
        raise InputError(None, f"--size {args.size} is too small (at least 32)")
    m = preprocess(args.videos, args.out, cfg, audio=args.audio)
    print(f"{args.out}: {m['num_frames']} frames ({m['splits']['train']} train, {m['splits']['val']} val) "
          f"in {len(m['shards']['train']) + len(m['shards']['val'])} shards")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="synthetic clip -> shards (-> model -> driven video), all offline")
    p.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    p.add_argument("--seconds", type=float, default=12.0, help="length of the synthetic clip")
    p.add_argument("--size", type=int, default=128, help="frame side of the demo (small for the CPU)")
    p.add_argument("--steps", type=int, default=300, help="training steps")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from hm_talker.demo import run_demo

    run_demo(args.out, seconds=args.seconds, size=args.size, steps=args.steps)
    return 0


def _add_compare(sub):
    p = sub.add_parser("compare", help="mean and spread over seeds per ablation group, with plots")
    p.add_argument("args", nargs=argparse.REMAINDER, help="RUNS... --out DIR | --wandb-project P [--group G]")
    p.set_defaults(func=_run_compare)


def _run_compare(args) -> int:
    from hm_talker.compare.cli import main as compare_main

    return compare_main(args.args)


def _verbosity_flags(parser, default) -> None:
    """-q / -v, accepted before and after the subcommand (the subcommand's copy keeps the top one)."""
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug messages and library deprecation warnings too")


class _SubParsers(argparse._SubParsersAction):
    def add_parser(self, name, **kwargs):
        p = super().add_parser(name, **kwargs)
        if name != "compare":  # compare passes everything after it to its own parser
            _verbosity_flags(p, argparse.SUPPRESS)
        return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hm-talker", description=__doc__)
    _verbosity_flags(parser, False)
    parser.register("action", "parsers", _SubParsers)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_preprocess(sub)
    _add_demo(sub)
    from hm_talker.training.fit import add_parser as _add_fit

    _add_fit(sub)
    from hm_talker.training.fit_cmmm import add_parser as _add_fit_cmmm

    _add_fit_cmmm(sub)
    from hm_talker.driving.infer import add_parser as _add_infer

    _add_infer(sub)
    from hm_talker.evaluation.cli import add_parser as _add_evaluate

    _add_evaluate(sub)
    _add_compare(sub)
    from hm_talker.launch.cli import add_parser as _add_sweep

    _add_sweep(sub)
    return parser


RESUMABLE = ("preprocess", "fit", "sweep", "demo")  # commands that continue where an interrupted run stopped


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt  # so that `with` blocks clean up partial output, as for Ctrl-C


def _resume_line(argv) -> str:
    import shlex

    args = list(sys.argv[1:] if argv is None else argv)
    return "hm-talker " + shlex.join(args + ([] if "--resume" in args else ["--resume"]))


def main(argv=None) -> int:
    import signal
    import threading

    from hm_talker.errors import Interrupted
    from hm_talker.log_setup import filter_native_stderr, setup_logging

    command_line = argv is None
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command == "compare":  # REMAINDER misses a leading option (compare --sweep N)
        args.args = unknown + args.args
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    setup_logging(level, verbose=args.verbose)
    if command_line and not args.verbose:
        filter_native_stderr()  # the process's own stderr (not when called in-process, e.g. by tests)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm_to_interrupt) if main_thread else None
    try:
        return args.func(args)
    except InputError as exc:
        print(f"hm-talker: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full or read-only disk, a permission: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hm-talker: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"hm-talker: {exc.message}; resume with: {_resume_line(argv)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if args.command in RESUMABLE:
            print("hm-talker: interrupted (finished work is kept; run the same command to resume)", file=sys.stderr)
        else:
            print(f"hm-talker: interrupted ({args.command} keeps no progress: running it again starts over)",
                  file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
