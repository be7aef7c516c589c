"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""


class InputError(Exception):
    """Bad user input (a file, an option): the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
