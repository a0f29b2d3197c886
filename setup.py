"""ament_python package vision_factory: the node generator and the runtime library of the generated nodes."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vision_factory"

setup(
    name=PACKAGE,
    version="0.1.0",
    # templates/ sits at the repository root (the ROS package layout) and ships as package data
    # vision_factory.templates, so the generator finds it through importlib.resources wherever installed.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]) + [f"{PACKAGE}.templates"],
    package_dir={f"{PACKAGE}.templates": "templates"},
    package_data={PACKAGE: ["manifests/*.yaml"],
                  f"{PACKAGE}.templates": ["*.j2", "vision_factory_msgs/*.*", "vision_factory_msgs/msg/*.msg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "jinja2"],
    extras_require={
        "onnx": ["onnxruntime"],
        "openvino": ["openvino"],
        "torch": ["torch", "torchvision", "ultralytics"],
        "test": ["pytest", "hypothesis", "rosbags"],
    },
    zip_safe=False,
    maintainer="vision_factory developers",
    maintainer_email="vision-factory@example.com",
    description="ROS 2 inference node generator and runtime library",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vision-factory = vision_factory.cli:main",
        ],
    },
)
