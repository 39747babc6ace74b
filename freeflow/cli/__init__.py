"""The ``freeflow`` command line: ``main`` (the console script) and ``build_parser``.

``freeflow.cli.options`` defines every command's options; ``freeflow.cli.classical`` and
``freeflow.cli.flows`` run the commands (parse nothing, call one workflow or report, print);
``freeflow.cli.common`` holds what they share.
"""

from freeflow.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
