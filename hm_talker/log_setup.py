"""How the `hm-talker` command prints: every message once, on one line, on stderr.

- Our loggers and Lightning's go through one root handler (``hm-talker: LEVEL: message``);
  Lightning's own handler, which printed every INFO line a second time, is removed.
- Python warnings become one log line each (message only, each text once); deprecation notices
  from libraries (DeprecationWarning, FutureWarning) are hidden unless ``-v``.
- Third-party adverts in log lines (Lightning's "Tip: ... try installing ...") are dropped.
- Native code's chatter on file descriptor 2 (mediapipe / TFLite / absl start-up lines) is filtered
  by `filter_native_stderr`; native errors pass through.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

FORMAT = "hm-talker: %(levelname)s: %(message)s"
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
ADVERTS = ("💡 Tip", "litlogger", "litmodels")  # substrings of third-party advertising lines
# native start-up lines: absl's pre-init notice, glog-style I/W lines, TFLite's INFO lines
NATIVE_CHATTER = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog|[IW]\d{4} |INFO: )")


WARNING_WHERE = re.compile(r"^\S*:\d+: (\w+: )?")  # "path.py:12: Category: " of a formatted warning


class _OneCleanLine(logging.Filter):
    """Drops adverts; turns a captured warning ("path:line: Category: text\n  source") into its
    text, shown once per process (libraries re-arm their warnings with filters of their own)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_warnings: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if any(a in msg for a in ADVERTS):
            return False
        if record.name == "py.warnings":
            lines = [ln for ln in WARNING_WHERE.sub("", msg.strip()).splitlines() if ln.strip()]
            record.msg, record.args = (lines[0] if lines else msg), None
            if record.msg in self.seen_warnings:
                return False
            self.seen_warnings.add(record.msg)
        return True


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return str(message).strip().splitlines()[0] if str(message).strip() else category.__name__


def adopt_library_loggers() -> None:
    """Remove the handlers Lightning installs on its loggers at import (`lightning` adds one
    unconditionally): their records reach the root handler once. Call after importing lightning."""
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True


def setup_logging(level: int, verbose: bool = False) -> None:
    """One stderr handler at `level` for everything; warnings routed to it (see the module doc)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)  # Lightning sets its loggers to INFO; the handler decides for all
    handler.addFilter(_OneCleanLine())
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("hm_talker").setLevel(level)
    adopt_library_loggers()
    warnings.formatwarning = _one_line_warning
    logging.captureWarnings(True)
    warnings.filterwarnings("once", category=UserWarning)  # each text once, wherever it is raised again
    if not verbose:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def filter_native_stderr() -> None:
    """Route file descriptor 2 through a pipe that drops NATIVE_CHATTER lines; Python's sys.stderr
    keeps writing to the real stderr directly. No-op when stderr is not a real file descriptor."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return
    sys.stderr.flush()
    real = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    old = sys.stderr
    sys.stderr = open(real, "w", buffering=1, errors="backslashreplace", closefd=False)
    for h in logging.getLogger().handlers:  # handlers made before now hold the old stream
        if isinstance(h, logging.StreamHandler) and h.stream is old:
            h.setStream(sys.stderr)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not NATIVE_CHATTER.match(line):
                    os.write(real, line)

    thread = threading.Thread(target=pump, name="native-stderr", daemon=True)
    thread.start()

    def close() -> None:
        try:
            os.dup2(real, fd)  # closes the pipe's last write end: the pump drains and ends
        except OSError:
            return
        thread.join(timeout=2.0)

    atexit.register(close)
