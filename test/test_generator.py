"""Manifest parsing, package generation and the `vision-factory` command."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vision_factory.backends import BACKENDS, onnxruntime_session, torch_session
from vision_factory.errors import ConfigError
from vision_factory.generator import plan_package, render_package, supported_pairs, write_package
from vision_factory.manifest import load_manifest, parse_manifest

PAIRS = [(model, backend) for model, backends in supported_pairs().items() for backend in backends]
VALID = yaml.safe_load("""
name: toy
summary: A toy detector
module: vision_factory.models.yolo
output: detections
unsupported_backends: [openvino, tensorrt, cuda, rocm, remote]
default_weights: toy.onnx
parameters:
  threshold: {type: double, default: 0.5, range: [0.0, 1.0], description: A threshold.}
""")


def manifest_text(**changes) -> str:
    data = {**VALID, **changes}
    return yaml.safe_dump({k: v for k, v in data.items() if v is not None})


def test_the_valid_fixture_parses() -> None:
    manifest = parse_manifest(manifest_text(), "toy.yaml")
    assert manifest.parameters[0].name == "threshold" and manifest.backends == ("onnx",)


# One bad spec per parser error; each message names the manifest and the field.
@pytest.mark.parametrize("changes, message", [
    (dict(colour="red"), "field 'colour': unknown key"),
    (dict(summary=None), "field 'summary': missing"),
    (dict(unsupported_backends="onnx"), "field 'unsupported_backends': expected a list"),
    (dict(name="Toy-Model"), "field 'name': 'Toy-Model' is not a lower-case identifier"),
    (dict(module="os; import sys"), "field 'module'"),
    (dict(weights_module="os; import sys"), "field 'weights_module'"),
    (dict(requirements="../../etc/passwd"), "field 'requirements': '../../etc/passwd' is not a requirements file"),
    (dict(output="poses3d"), "field 'output': 'poses3d' is not one of"),
    (dict(unsupported_backends=["onnx", "directml"]), "field 'unsupported_backends': unknown backend 'directml'"),
    (dict(summary='Toy"""\nimport os'), "field 'summary': must be one line"),
    (dict(parameters={"device": {"type": "string", "default": "", "description": "x"}}),
     "field 'parameters.device': already declared"),
    (dict(parameters={"t": {"type": "double", "default": 0.5, "description": "x", "units": "m"}}),
     "field 'parameters.t.units': unknown key"),
    (dict(parameters={"t": {"type": "float", "default": 0.5, "description": "x"}}),
     "field 'parameters.t': parameter 't': type 'float'"),
    (dict(parameters={"t": {"type": "double", "default": 2.0, "range": [0, 1], "description": "x"}}),
     "field 'parameters.t': parameter 't': default 2.0: 2.0 is outside"),
    (dict(parameters={"t": {"type": "integer", "default": "3", "description": "x"}}),
     "expected a integer, got str"),
    (dict(parameters={"t": {"type": "double", "default": 0.5}}), "field 'parameters.t.description'"),
    (dict(parameters={"t": {"type": "string", "default": "", "description": "a\nb"}}),
     "field 'parameters.t.description': must be one line"),
    (dict(gpu_runtime="tensorflow"), "field 'gpu_runtime': 'tensorflow' is not one of: pytorch, onnxruntime"),
    (dict(weights={"model": {"default": "a.onnx", "description": "x", "module": "m"}}),
     "field 'weights.model': a weights parameter is a lower-case identifier no node or backend declares"),
    (dict(weights={"detector": {"default": "a.onnx", "description": "x"}}),
     "field 'weights.detector': expected a mapping of exactly default, description, module"),
    (dict(weights={"detector": {"default": "a.onnx", "description": "x", "module": "os; import sys"}}),
     "field 'weights.detector.module'"),
    (dict(weights={"detector": {"default": "a\nb", "description": "x", "module": "m"}}),
     "field 'weights.detector': default and description must be one line"),
    (dict(weights={"threshold": {"default": "a.onnx", "description": "x", "module": "m"}}),
     "field 'parameters.threshold': already declared by every node, by a backend, by an output kind or as weights"),
    (dict(node="ros2_control"), "field 'node': 'ros2_control' is not one of: inference, tracker"),
    (dict(module=None), "field 'module': missing"),
    (dict(node="tracker", output="tracks"), "field 'module': a tracker runs no network: it has no module"),
    (dict(node="tracker", module=None, default_weights=None, unsupported_backends=None),
     "field 'output': 'detections' is not one of: tracks (what a tracker node publishes)"),
    (dict(output="tracks"), "field 'output': 'tracks' is not one of: detections, poses, depth"),
    (dict(parameters={"tracker": {"type": "string", "default": "", "description": "x"}}),
     "field 'parameters.tracker': already declared"),
    (dict(precision={"remote": "fp16"}), "field 'precision.remote': not a backend with a precision parameter"),
    (dict(precision={"onnx": "fp16"}), "field 'precision.onnx': 'fp16' is not one of: fp32, int8"),
    (dict(precision={"directml": "fp16"}), "field 'precision.directml': not a backend with a precision parameter"),
    (dict(precision={"openvino": "int4"}), "field 'precision.openvino': 'int4' is not one of: fp32, fp16, bf16, auto"),
    (dict(precision=["auto"]), "field 'precision': expected a dict"),
])
def test_bad_manifests_are_refused_naming_the_field(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_manifest(manifest_text(**changes), "toy.yaml")
    assert str(error.value).startswith("toy.yaml: ") and message in str(error.value)


def test_integer_steps_are_checked_as_ros_checks_them() -> None:
    from vision_factory.parameters import ParameterSpec

    spec = ParameterSpec("input_width", "integer", 518, "x", range=(14, 4088), step=14)
    assert spec.validate(686) == "" and spec.validate(4088) == ""
    assert spec.validate(690) == "690 is not 14 plus a multiple of 14"


def test_extra_weights_become_live_parameters_and_gpu_runtime_picks_cuda() -> None:
    manifest = parse_manifest(manifest_text(
        gpu_runtime="onnxruntime", unsupported_backends=["openvino", "tensorrt", "rocm"],
        weights={"detector": {"default": "d.onnx", "description": "The detector.", "module": "m.d"}}), "toy.yaml")
    assert [(w.parameter, w.default, w.module) for w in manifest.weights] == [
        ("model", "toy.onnx", "vision_factory.models.yolo"), ("detector", "d.onnx", "m.d")]
    detector = manifest.parameters[0]
    assert (detector.name, detector.type, detector.default, detector.applies) == ("detector", "string", "d.onnx",
                                                                                  "rebuild")
    assert manifest.backend("cuda").runtime is onnxruntime_session
    assert parse_manifest(manifest_text(), "toy.yaml").backend("cuda").runtime is torch_session


def test_a_manifest_sets_the_default_precision_of_a_backend() -> None:
    from vision_factory.parameters import node_parameters

    manifest = parse_manifest(manifest_text(unsupported_backends=[], precision={"openvino": "auto"}), "toy.yaml")

    def precision(backend: str) -> str:
        return next(p.default for p in node_parameters(manifest, manifest.backend(backend)) if p.name == "precision")

    assert (precision("openvino"), precision("cuda"), precision("tensorrt")) == ("auto", "fp32", "fp16")
    assert load_manifest("yolo").precision_default("openvino") == "auto"


def test_shipped_manifests_load() -> None:
    assert load_manifest("yolo").module == "vision_factory.models.yolo"
    assert load_manifest("yolo").weights[0].module == "vision_factory.models.yolo_weights"
    assert load_manifest("rtmpose").output == "poses"
    assert (load_manifest("bytetrack").node, load_manifest("bytetrack").backends) == ("tracker", ())
    with pytest.raises(ConfigError, match="unknown model 'yolo9000' \\(known: bytetrack, depth_anything, florence2, "
                                          "grounding_dino, rtmpose, sam, yolo, zoedepth"):
        load_manifest("yolo9000")


@pytest.mark.parametrize("model, backend", PAIRS)
def test_every_supported_pair_renders_and_its_node_module_imports(tmp_path: Path, model: str, backend: str) -> None:
    plan = plan_package(model, backend, weights="/weights/w.onnx")
    root, *interfaces = write_package(plan, tmp_path)
    node_file = root / plan.package / f"{plan.node}.py"
    spec = importlib.util.spec_from_file_location(f"generated_{plan.node}", node_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = [p.name for p in module.PARAMETERS]
    assert len(names) == len(set(names))
    assert {"model", "input_reliability"} | {p.name for p in plan.manifest.parameters} <= set(names)
    assert {p.name for p in plan.backend.parameters} <= set(names)
    assert module.PARAMETERS[0].default == "/weights/w.onnx"
    assert callable(module.main) and module.__doc__.startswith(plan.node)
    ast.parse((root / "setup.py").read_text())
    launch = (root / "launch" / f"{plan.node}.launch.py").read_text()
    ast.parse(launch)
    assert f'"package": {plan.package!r}' in launch and '"node.launch.py"' in launch
    params = yaml.safe_load((root / "config" / "params.yaml").read_text())["/**"]["ros__parameters"]
    assert params == {p.name: p.default for p in module.PARAMETERS}
    package_xml = (root / "package.xml").read_text()
    assert f"<name>{plan.package}</name>" in package_xml and "<exec_depend>vision_msgs</exec_depend>" in package_xml
    assert "<build_type>ament_python</build_type>" in package_xml
    # What to pip install: the backend's runtime, and what the model needs besides (e.g. rtmlib, tokenizers).
    runtime = f"pip install -r requirements/{plan.backend.requirements}" + (
        f" -r requirements/{plan.manifest.requirements}" if plan.manifest.requirements else "")
    assert f"`{runtime}`" in (root / "README.md").read_text()
    assert (Path(__file__).parents[1] / "requirements" / (plan.manifest.requirements or "core.txt")).is_file()
    assert (root / "resource" / plan.package).exists()
    # A pose or text package needs the project's message package: it is written beside it.
    needs_messages = "<exec_depend>vision_factory_msgs</exec_depend>" in package_xml
    assert needs_messages == (plan.manifest.output in ("poses", "text"))
    assert interfaces == ([tmp_path / "vision_factory_msgs"] if needs_messages else [])
    if needs_messages:
        assert {p.name for p in (interfaces[0] / "msg").iterdir()} == {
            "GeneratedText.msg", "Keypoint.msg", "KeypointPose.msg", "KeypointPoseArray.msg", "KeypointSkeleton.msg"}


def test_output_is_deterministic() -> None:
    first = render_package(plan_package("yolo", "openvino", weights="/w.pt"))
    second = render_package(plan_package("yolo", "openvino", weights="/w.pt"))
    assert first == second
    assert all("Auto-generated by vision_factory" in text for name, text in first.items()
               if not name.startswith("resource/"))


@pytest.mark.parametrize("weights", ["/tmp/x'''\nimport os", "/tmp/\"); import os; print(\"", "a\\\" b"])
def test_hostile_weights_paths_cannot_inject_code(tmp_path: Path, weights: str) -> None:
    try:
        plan = plan_package("yolo", "onnx", weights=weights)
    except ConfigError as e:
        assert "line break" in str(e)
        return
    root, = write_package(plan, tmp_path)
    tree = ast.parse((root / plan.package / f"{plan.node}.py").read_text())
    assert [type(n).__name__ for n in tree.body] == ["Expr", "ImportFrom", "ImportFrom", "Assign", "ClassDef",
                                                     "FunctionDef", "FunctionDef", "If"]
    params = yaml.safe_load((root / "config" / "params.yaml").read_text())
    assert params["/**"]["ros__parameters"]["model"] == weights


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vision_factory", *args], capture_output=True, text=True)


def test_a_tracker_manifest_makes_one_package_without_a_backend(tmp_path: Path) -> None:
    """bytetrack runs no network: `generate --model bytetrack` writes package bytetrack, whose node is the
    tracker node with the tracker parameters (bytetrack by default), no lifecycle executable, and a launch
    file taking the detections topic; asking for a backend is refused, as is leaving one out for yolo."""
    plan = plan_package("bytetrack", None)
    assert (plan.package, plan.node, plan.backend) == ("bytetrack", "bytetrack", None)
    root, = write_package(plan, tmp_path)
    spec = importlib.util.spec_from_file_location("generated_bytetrack", root / "bytetrack" / "bytetrack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defaults = {p.name: p.default for p in module.PARAMETERS}
    assert defaults["tracker"] == "bytetrack" and "model" not in defaults and "input_reliability" in defaults
    assert module.BytetrackNode.__mro__[1].__name__ == "TrackerNode" and not hasattr(module, "main_managed")
    assert "_managed" not in (root / "setup.py").read_text()
    launch = (root / "launch" / "bytetrack.launch.py").read_text()
    assert '"node.launch.py"' in launch and "detections:=/yolo_onnx/detections" in launch
    assert "detections:=/yolo_onnx/detections" in (root / "README.md").read_text()
    with pytest.raises(ConfigError, match="runs no network, so it has no backends"):
        plan_package("bytetrack", "onnx")
    with pytest.raises(ConfigError, match="needs a backend"):
        plan_package("yolo", None)
    assert "tracker" in {p.name for p in plan_package("yolo", "onnx").parameters}  # every detections node


def test_list_shows_models_backends_and_pairs() -> None:
    result = run_cli("list")
    assert result.returncode == 0
    for backend in BACKENDS:
        assert backend in result.stdout
    assert "yolo" in result.stdout and "supported pairs" in result.stdout
    # Every row of the pairs table is its model's name, a space, then one yes / - per backend.
    rows = result.stdout.split("supported pairs (model x backend):\n")[1].splitlines()[1:]
    for row in rows:
        name, *cells = row.split()
        assert len(cells) == len(BACKENDS) and set(cells) <= {"yes", "-"}, row


def test_bench_takes_its_own_options() -> None:
    result = run_cli("bench", "--help")
    assert result.returncode == 0 and "--quick" in result.stdout and "--models" in result.stdout
    result = run_cli("bench", "--models", "nope")
    assert result.returncode == 2 and "no benchmark for nope" in result.stderr


def test_generate_writes_the_package(tmp_path: Path) -> None:
    result = run_cli("generate", "--model", "yolo", "--backend", "onnx", "--weights", "w.onnx", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "yolo_onnx" / "yolo_onnx" / "yolo_onnx.py").is_file()
    assert not (tmp_path / "vision_factory_msgs").exists()


def test_generate_writes_the_message_package_beside_a_pose_package(tmp_path: Path) -> None:
    result = run_cli("generate", "--model", "rtmpose", "--backend", "cuda", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "vision_factory_msgs" / "package.xml").is_file() and "vision_factory_msgs" in result.stdout
    params = yaml.safe_load((tmp_path / "rtmpose_cuda" / "config" / "params.yaml").read_text())["/**"]["ros__parameters"]
    assert params["execution_provider"] == "cuda,cpu" and params["detector_model"].endswith(".zip")


@pytest.mark.parametrize("args, message", [
    (["--model", "nope", "--backend", "onnx"], "unknown model 'nope'"),
    (["--model", "yolo", "--backend", "metal"], "unknown backend 'metal'"),
    (["--model", "yolo", "--backend", "onnx", "--package", "Yolo-Onnx"], "not a valid ROS package name"),
    (["--model", "yolo", "--backend", "onnx", "--package", "yolo__onnx"], "not a valid ROS package name"),
])
def test_generate_refuses_with_exit_code_2_and_one_line(tmp_path: Path, args: list, message: str) -> None:
    result = run_cli("generate", *args, "--out", str(tmp_path))
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_unsupported_pair_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import vision_factory.generator as generator

    only_onnx = dataclasses.replace(load_manifest("yolo"), backends=("onnx",))
    monkeypatch.setattr(generator, "load_manifest", lambda name: only_onnx)
    with pytest.raises(ConfigError, match="does not support backend 'cuda' \\(supported: onnx\\)"):
        plan_package("yolo", "cuda")


def test_output_is_byte_identical_across_processes(tmp_path: Path) -> None:
    trees = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "vision_factory", "generate", "--model", "yolo", "--backend", "tensorrt",
                        "--weights", "w.pt", "--out", str(out)], check=True, env=env, capture_output=True)
        trees.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] and len(trees[0]) == 9


def test_the_shared_launch_file_declares_its_arguments() -> None:
    tree = ast.parse((Path(__file__).parent.parent / "launch" / "node.launch.py").read_text())
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    assert declared == {"package", "executable", "node_name", "image", "image_topics", "detections", "params_file",
                        "namespace", "log_level", "managed"}


def test_the_launch_files_image_topics_become_cameras_and_their_remappings(monkeypatch: pytest.MonkeyPatch) -> None:
    """node.launch.py's node, built with stand-ins for launch and launch_ros (not installable here) that
    record what the node would be given."""
    import importlib.util
    import types

    class Recorded:
        def __init__(self, *args: object, **kwargs: object):
            self.args, self.kwargs = args, kwargs

    class Configuration(Recorded):
        def perform(self, context: dict) -> str:
            return context[self.args[0]]

    stand_ins = {"launch": dict(LaunchContext=dict, LaunchDescription=Recorded),
                 "launch.actions": dict(DeclareLaunchArgument=Recorded, OpaqueFunction=Recorded),
                 "launch.conditions": dict(IfCondition=Recorded, UnlessCondition=Recorded),
                 "launch.substitutions": dict(LaunchConfiguration=Configuration, PathJoinSubstitution=Recorded),
                 "launch_ros.actions": dict(LifecycleNode=Recorded, Node=Recorded),
                 "launch_ros.substitutions": dict(FindPackageShare=Recorded)}
    for name, members in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**members))
    spec = importlib.util.spec_from_file_location("node_launch", Path(__file__).parent.parent / "launch" /
                                                  "node.launch.py")
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)

    def node(image_topics: str) -> dict:
        plain, managed = launch_file._node({"image_topics": image_topics})
        assert plain.kwargs["remappings"] == managed.kwargs["remappings"]
        remaps = {source: target if isinstance(target, str) else target.args[0]
                  for source, target in plain.kwargs["remappings"]}
        return {"remappings": remaps, "parameters": plain.kwargs["parameters"][1:]}

    assert node("") == {"remappings": {"image_raw": "image", "detections": "detections"}, "parameters": []}
    several = node(" /front/image_raw, /rear/image_raw,")
    assert several["parameters"] == [{"cameras": 2}]
    assert several["remappings"] == {"image_raw": "image", "detections": "detections",
                                     "cam0/image_raw": "/front/image_raw", "cam1/image_raw": "/rear/image_raw"}


def test_a_node_generated_for_other_parameters_exits_with_one_line(tmp_path: Path) -> None:
    """A package generated by an older vision_factory (here: one parameter renamed, one default changed)
    refuses to start against this library instead of failing later on a missing parameter."""
    pytest.importorskip("rclpy")
    root, = write_package(plan_package("yolo", "onnx", weights="/weights/w.onnx"), tmp_path)
    node_file = root / "yolo_onnx" / "yolo_onnx.py"
    text = node_file.read_text()
    assert "'iou_threshold'" in text and "'max_detections', 'integer', 300," in text
    node_file.write_text(text.replace("'iou_threshold'", "'iou_thresh'")
                         .replace("'max_detections', 'integer', 300,", "'max_detections', 'integer', 100,"))
    result = subprocess.run([sys.executable, str(node_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("yolo_onnx.py: cannot start: generated by vision_factory 0.1.0 for other "
                               "parameters: regenerate the package")
    assert "+iou_threshold" in lines[0] and "-iou_thresh" in lines[0] and "~max_detections" in lines[0]
