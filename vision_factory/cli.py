"""The `vision-factory` command: list models and backends, generate node packages, manage the export cache,
export networks for an inference server, quantise to int8 and report the accuracy of reduced precisions against
fp32, benchmark the nodes.

Errors a user can fix exit with code 2 and one line saying why.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from vision_factory.artifacts import Artifact
from vision_factory.backends import BACKENDS, ONNXRUNTIME_GPU_BACKENDS
from vision_factory.errors import ConfigError
from vision_factory.export_cache import ExportCache
from vision_factory.generator import plan_package, supported_pairs, write_package
from vision_factory.loaded_model import DEFAULT_FRAME_HW, export_options, prepare_artifacts, resolve_weights
from vision_factory.manifest import load_manifest
from vision_factory.parameters import parse_assignments
from vision_factory.tools.workspace import shared_assets

EXIT_USAGE = 2


def _list() -> None:
    pairs = supported_pairs()
    width = max(len(name) for name in [*pairs, *BACKENDS]) + 2  # columns never run into each other
    print("models:")
    for name in pairs:
        print(f"  {name:<{width}}{load_manifest(name).summary}")
    print("backends:")
    for backend in BACKENDS.values():
        print(f"  {backend.name:<{width}}{backend.summary}")
    onnx_gpu = [name for name in pairs if load_manifest(name).gpu_runtime == "onnxruntime"]
    print(f"cuda and rocm of the models whose weights are ONNX files ({', '.join(onnx_gpu)}):")
    for backend in ONNXRUNTIME_GPU_BACKENDS.values():
        print(f"  {backend.name:<{width}}{backend.summary}")
    networkless = [name for name, backends in pairs.items() if not backends]
    print(f"models without a network, generated without a backend: {', '.join(networkless) or 'none'}")
    print("supported pairs (model x backend):")
    print("  " + " " * width + "".join(f"{name:<{width}}" for name in BACKENDS))
    for name, backends in pairs.items():
        if backends:
            print(f"  {name:<{width}}" + "".join(f"{'yes' if b in backends else '-':<{width}}" for b in BACKENDS))


def _generate(args: argparse.Namespace) -> None:
    plan = plan_package(args.model, args.backend, weights=args.weights, package=args.package)
    root, *interfaces = write_package(plan, Path(args.out))
    print(f"wrote {root} (node {plan.node}); build it with `colcon build` in the workspace")
    for folder in interfaces:
        print(f"wrote {folder}: the message package the node publishes; colcon builds it first")


def _cache(args: argparse.Namespace) -> None:
    cache = ExportCache(args.cache_dir)
    if args.action == "list":
        entries = cache.entries()
        print(f"{len(entries)} entries in {cache.root}")
        for entry in entries:
            fields = entry["fields"]
            versions = ", ".join(f"{k} {v}" for k, v in sorted(fields.items())
                                 if k not in ("model", "backend", "weights_sha256", "weights_format", "options"))
            print(f"  {entry['key']}  {fields['model']} x {fields['backend']}  {entry['artifact']}  "
                  f"{entry['bytes'] / 1e6:.1f} MB  created {entry['created']}  export {entry['export_seconds']} s")
            print(f"      weights sha256 {fields['weights_sha256'][:16]}... ({fields['weights_format']}), "
                  f"options {fields['options']}, {versions}")
    elif args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.root}")
    else:
        _warm(args, cache)


def _warm(args: argparse.Namespace, cache: ExportCache) -> None:
    """Export exactly what a node with these parameters would load, without opening a session."""
    for role, artifact in _artifacts(args, args.backend, cache).items():
        print(f"{role}: {'exported' if artifact.exported else 'already cached'}: {artifact.path}")


def _artifacts(args: argparse.Namespace, backend: str, cache: ExportCache) -> dict[str, Artifact]:
    """The artifacts a <model>_<backend> node with args' weights, parameters and frame size loads, exported
    into `cache` if need be."""
    plan = plan_package(args.model, backend, weights=args.weights)
    values = _node_values(args, plan, cache)
    width, height = args.frame_size
    paths = resolve_weights(plan.manifest, values)
    return prepare_artifacts(plan.manifest, plan.backend, values, paths,
                             export_options(plan.manifest, values, paths, (height, width)),
                             logging.getLogger("vision-factory"))


def _node_values(args: argparse.Namespace, plan: Any, cache: ExportCache) -> dict[str, Any]:
    """The parameter values of the node `plan` (generator.PackagePlan) describes, with args' -p assignments
    (each validated: ConfigError naming the first bad one) and `cache` as its export cache."""
    values: dict[str, Any] = plan.defaults()
    values.update(parse_assignments(args.param, values))
    for spec in plan.parameters:
        problem = spec.validate(values[spec.name])
        if problem:
            raise ConfigError(f"parameter '{spec.name}': {problem}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    values["cache_dir"] = str(cache.root)
    return values


def _accuracy(args: argparse.Namespace) -> None:
    """Print and write the accuracy report of one model x backend at each precision against fp32."""
    from vision_factory.tools.accuracy_report import precision_choices, report, write

    plan = plan_package(args.model, args.backend, weights=args.weights)
    values = _node_values(args, plan, ExportCache(args.cache_dir))
    precisions = args.precisions.split(",") if args.precisions else precision_choices(plan.backend)
    width, height = args.frame_size
    lines = report(plan.manifest, plan.backend, values, precisions, Path(args.assets), (height, width),
                   logging.getLogger("vision-factory"))
    print(write(Path(args.out), f"{args.model} on {args.backend}, weights {values['model']}", lines))


def _export(args: argparse.Namespace) -> None:
    """Write the networks a remote node of these parameters sends its tensors to into a model repository."""
    from vision_factory.model_repository import server_model_name, write_model

    repository = Path(args.repository)
    for role, artifact in _artifacts(args, "remote", ExportCache(args.cache_dir)).items():
        name = server_model_name(artifact.name, args.name or "")
        try:
            folder = write_model(repository, name, args.version, artifact.path, args.max_batch_size, args.instances,
                                 args.instance_kind, source=args.weights or "")
        except ImportError as e:
            raise ConfigError(f"export needs the remote backend's packages (pip install -r "
                              f"requirements/remote.txt): {e}") from e
        print(f"{role}: wrote {folder} (model_name {name}, version {args.version})")
    name_parameter = f" -p model_name:={args.name}" if args.name else ""
    print(f"serve it (e.g. tritonserver --model-repository {repository}) and run the node with "
          f"-p server_url:=grpc://HOST:8001{name_parameter}")


def frame_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height)."""
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT (e.g. 1280x720)") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"'{text}' has no pixels")
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vision-factory", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="models, backends and the supported pairs")
    generate = commands.add_parser("generate", help="write the ROS 2 package of one model x backend")
    generate.add_argument("--model", required=True)
    generate.add_argument("--backend", help="the backend (not for a model that runs no network, e.g. bytetrack)")
    generate.add_argument("--weights", help="weights path (default: the model's default weights name)")
    generate.add_argument("--package", help="package name (default: <model>_<backend>)")
    generate.add_argument("--out", required=True, help="folder to write into, e.g. WS/src")
    cache = commands.add_parser("cache", help="list, clear or pre-build (warm) the export cache")
    cache.add_argument("action", choices=["list", "clear", "warm"])
    cache.add_argument("--cache-dir", help="default: $ROS_HOME/vision_factory, else ~/.cache/vision_factory")
    cache.add_argument("--model", help="warm: the model")
    cache.add_argument("--backend", help="warm: the backend")
    cache.add_argument("--weights", help="warm: weights path (default: the model's default weights name)")
    export = commands.add_parser("export", help="write a model's networks into an inference server's model "
                                                "repository (Triton's layout and config.pbtxt), for the remote backend")
    export.add_argument("--model", required=True)
    export.add_argument("--weights", help="weights path (default: the model's default weights name)")
    export.add_argument("--repository", required=True, help="the model repository folder (created if need be)")
    export.add_argument("--name", help="the model's name on the server (default: the model's, e.g. yolo); "
                                       "the node's model_name parameter")
    export.add_argument("--version", type=int, default=1, help="version folder to write (default %(default)s)")
    export.add_argument("--max-batch-size", type=int, default=8,
                        help="largest batch the server forms, for networks with a dynamic batch axis (default "
                             "%(default)s; networks of a fixed batch get 0)")
    export.add_argument("--instances", type=int, default=1, help="copies of the model the server runs")
    export.add_argument("--instance-kind", choices=["auto", "cpu", "gpu"], default="auto")
    accuracy = commands.add_parser("accuracy", help="how far each precision of a model x backend answers from "
                                                    "its fp32 answers on the shipped images and video, and its "
                                                    "person AP50 on the COCO images")
    accuracy.add_argument("--backend", required=True)
    accuracy.add_argument("--precisions", help="comma-separated (default: every precision the backend has)")
    quantize = commands.add_parser("quantize", help="build a model's int8 network into the export cache (what a "
                                                    "node with precision int8 loads) and report its accuracy "
                                                    "against fp32")
    quantize.add_argument("--backend", default="onnx", help="default: %(default)s")
    quantize.add_argument("--calibration-data", required=True,
                          help="frames from the camera: a folder of images, a video or a rosbag2 folder")
    for command in (accuracy, quantize):
        command.add_argument("--model", required=True)
        command.add_argument("--weights", help="weights path (default: the model's default weights name)")
        command.add_argument("--assets", default=str(shared_assets()),
                             help="the report's images, video and COCO annotations (default: %(default)s)")
        command.add_argument("--out", default=f"out/{command.prog.split()[-1]}",
                             help="where accuracy.json and accuracy.md go (default: %(default)s)")
        command.add_argument("--cache-dir", help="where the exports are cached (default: as for the nodes)")
    for command in (cache, export, accuracy, quantize):
        command.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                             help="a node parameter, as the node will have it (e.g. -p imgsz=320)")
        command.add_argument("--frame-size", type=frame_size, default="{}x{}".format(*DEFAULT_FRAME_HW[::-1]),
                             metavar="WIDTHxHEIGHT",
                             help="the camera's frame size, for models sized by it (depth at input size 0; "
                                  "default %(default)s)")
    export.add_argument("--cache-dir", help="where the export is cached (default: as for the nodes)")
    # Listed here for --help; its own parser takes its options (argparse's REMAINDER would refuse them).
    commands.add_parser("bench", add_help=False, help="benchmark every runnable node against each model's "
                                                      "baseline (vision-factory bench --help)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from vision_factory.tools.bench.compare import main as bench

        sys.exit(bench(argv[1:]))
    args = parser.parse_args(argv)
    if args.command == "cache" and args.action == "warm" and not (args.model and args.backend):
        parser.error("cache warm needs --model and --backend")
    try:
        if args.command == "list":
            _list()
        elif args.command == "generate":
            _generate(args)
        elif args.command == "export":
            _export(args)
        elif args.command == "accuracy":
            _accuracy(args)
        elif args.command == "quantize":
            args.param.append(f"calibration_data={args.calibration_data}")
            args.param.append("precision=int8")
            args.precisions = "int8"
            _accuracy(args)
        else:
            _cache(args)
    except ConfigError as e:
        print(f"vision-factory: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
