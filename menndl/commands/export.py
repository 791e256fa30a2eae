"""``menndl export LIB ID --format pt2|onnx|state-dict|python|torchscript -o PATH``."""

from __future__ import annotations

import argparse
import sys

HELP = "export a library architecture (torch.export .pt2, ONNX, state dict, self-contained Python, TorchScript)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl export``."""
    parser.add_argument("library", metavar="LIB", help="library file")
    parser.add_argument("id", type=int, metavar="ID", help="evaluation id (see menndl library LIB top)")
    parser.add_argument(
        "--format",
        required=True,
        choices=("pt2", "onnx", "state-dict", "python", "torchscript"),
        help="output format (pt2: torch.export.load(PATH).module(); torchscript is deprecated)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="PATH", help="file to write")
    parser.add_argument("--weights", metavar="PATH", help="trained weights from `menndl train` (else the library's)")


def main(args: argparse.Namespace) -> int:
    """Export one architecture; says on stderr where its weights came from."""
    from menndl.library import Library
    from menndl.library.export import DEPRECATED, export

    with Library.open(args.library) as lib:
        origin = export(lib, args.id, args.format, args.output, args.weights)
    print(f"{args.output}: evaluation {args.id} as {args.format}, with {origin}", file=sys.stderr)
    if args.format in DEPRECATED:
        print(f"menndl: note: {DEPRECATED[args.format]}", file=sys.stderr)
    return 0
