"""Kept only so that `cli.py`'s ``from sam2long_stream.launch import add_parser`` works
until it imports `sam2long_stream.supervisor` (the launcher's package) directly; then
delete this file."""

from sam2long_stream.supervisor import add_parser, main

__all__ = ["add_parser", "main"]
