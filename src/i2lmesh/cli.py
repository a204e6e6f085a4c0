"""The ``i2lmesh`` command line: one entry point, one module per subcommand in ``i2lmesh.commands``.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int`` and a one-line ``HELP``.
Errors a user can act on (missing files, bad input) are printed as one line without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from pathlib import Path

from .commands.errors import UserError

# name -> module under i2lmesh.commands
COMMANDS: dict[str, str] = {
    "quickstart": "quickstart",
    "convert-dataset": "convert_dataset",
    "convert-official": "convert_official",
    "export-onnx": "export_onnx",
    "synth": "synth",
    "train": "train",
    "eval": "eval",
    "demo": "demo",
    "reproduce": "reproduce",
    "app": "app",
    "pseudo-label": "pseudo_label",
}


# The dataset formats of ``data.formats.LOADERS``, named here so that building the parser imports no torch
# (tests/test_method_fit.py checks that the two lists agree).
DATASET_FORMATS = ("coco", "freihand", "h36m", "i2lmesh", "muco", "pw3d", "surreal")


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, ValueError)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    first = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"i2lmesh: warning: {first}", file=file or sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2lmesh", description="I2L-MeshNet: 3D human body and hand meshes "
                                     "from one RGB image.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"i2lmesh.commands.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse, plus: a command that sets the default ``_intermixed`` to the name of its list of input paths also
    takes inputs given after its options (``demo a.jpg --focal 1000 b.jpg``; argparse alone stops the list at the
    first option and refuses the rest). Anything else unrecognised is the usual usage error."""
    args, extra = parser.parse_known_args(argv)
    target = getattr(args, "_intermixed", None)
    if extra and target and not any(item.startswith("-") for item in extra):
        getattr(args, target).extend(Path(item) for item in extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:  # a library's warning is one line, not its file, line and source text
        warnings.showwarning = _one_line_warning
        logging.getLogger("anny").setLevel(logging.WARNING)  # "Loading cached model data ..." on every start
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("i2lmesh: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        print(f"i2lmesh {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
