"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""

WORKER_PREFIX = "InputError: "  # how the original error's line reads in a loader worker's traceback


class InputError(Exception):
    """Bad user input (a file, an option): the message names the file and the problem.

    A DataLoader worker's error reaches the main process re-created from its whole traceback text
    (`InputError(text)`); the one line of the original error is recovered from that text."""

    def __init__(self, path, problem: str | None = None):
        if problem is None and isinstance(path, str) and "\n" in path:
            path, problem = None, _original_line(path)
        elif problem is None:
            path, problem = None, str(path)
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def _original_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if WORKER_PREFIX in ln:
            return ln.split(WORKER_PREFIX, 1)[1]
    return lines[-1] if lines else text


class Interrupted(KeyboardInterrupt):
    """A job stopped by Ctrl-C / SIGTERM after saving its state; `resume` says how to continue."""

    def __init__(self, message: str, resume: bool = True):
        super().__init__(message)
        self.message, self.resume = message, resume
