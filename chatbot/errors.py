"""The project's exceptions.

ChatbotError
 ├── FlowError          one problem in a flow file (file, line, key path, message)
 │    └── FlowSetError  every problem found while loading a set of flows
 ├── ProtocolError      a bad frame from a client (machine-readable code)
 ├── StorageError       the database cannot do what was asked
 └── ConfigError        a setting has an unusable value
"""

from __future__ import annotations


class ChatbotError(Exception):
    """Root of every error this project raises on purpose."""


class FlowError(ChatbotError):
    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        super().__init__(path, line, key, message)
        self.path = path
        self.line = line
        self.key = key
        self.message = message

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class FlowSetError(ChatbotError):
    def __init__(self, problems: list[FlowError]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class ProtocolError(ChatbotError):
    def __init__(self, code: str, message: str, *, close_code: int | None = None,
                 in_reply_to: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.in_reply_to = in_reply_to

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class StorageError(ChatbotError):
    pass


class ConfigError(ChatbotError):
    pass


def one_line(error: BaseException) -> str:
    """An error's text on one line: libpq's run over several ("…failed: Connection refused",
    a tab, "Is the server running…", an empty line), which would break a `where: what` line."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def not_a_folder(error: OSError, path) -> str:
    """Why `path` could not be made a folder: "File exists" or "Not a directory" alone would say
    nothing useful."""
    if isinstance(error, FileExistsError):
        return f"{path} is a file, not a folder"
    if isinstance(error, NotADirectoryError):
        return f"a part of {path} is a file, not a folder"
    return error.strerror or str(error)
