"""The `vision-factory` command: list models and backends, generate node packages.

Errors a user can fix exit with code 2 and one line saying why.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vision_factory.backends import BACKENDS
from vision_factory.errors import ConfigError
from vision_factory.generator import plan_package, supported_pairs, write_package
from vision_factory.manifest import load_manifest

EXIT_USAGE = 2


def _list() -> None:
    pairs = supported_pairs()
    print("models:")
    for name in pairs:
        print(f"  {name:<10} {load_manifest(name).summary}")
    print("backends:")
    for backend in BACKENDS.values():
        print(f"  {backend.name:<10} {backend.summary}")
    print("supported pairs (model x backend):")
    print("  " + " " * 10 + "".join(f"{name:<10}" for name in BACKENDS))
    for name, backends in pairs.items():
        print(f"  {name:<10}" + "".join(f"{'yes' if b in backends else '-':<10}" for b in BACKENDS))


def _generate(args: argparse.Namespace) -> None:
    plan = plan_package(args.model, args.backend, weights=args.weights, package=args.package)
    root = write_package(plan, Path(args.out))
    print(f"wrote {root} (node {plan.node}); build it with `colcon build` in the workspace")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vision-factory", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="models, backends and the supported pairs")
    generate = commands.add_parser("generate", help="write the ROS 2 package of one model x backend")
    generate.add_argument("--model", required=True)
    generate.add_argument("--backend", required=True)
    generate.add_argument("--weights", help="weights path (default: the model's default weights name)")
    generate.add_argument("--package", help="package name (default: <model>_<backend>)")
    generate.add_argument("--out", required=True, help="folder to write into, e.g. WS/src")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list()
        else:
            _generate(args)
    except ConfigError as e:
        print(f"vision-factory: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
