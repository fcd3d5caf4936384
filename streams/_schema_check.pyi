"""Types of streams/_schema_check.c (the programs are streams/schema_program.py's)."""

from typing import Any

class Program:
    """A schema program read into C structures once."""

    def __init__(self, program: tuple[Any, ...]) -> None: ...
    def accepts(self, record: object) -> bool: ...
    def evaluate(self, record: object) -> int: ...
