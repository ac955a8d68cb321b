"""The command line: parses, loads config, sets up logging and calls one library function per command."""

from daskcluster.cli.commands import main

__all__ = ["main"]
