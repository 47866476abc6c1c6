"""Write ``tests/bench/gpu_check_wheel_requires.json``: the ``Requires-Dist`` lines of every wheel
``scripts/gpu_check_wheels.txt`` lists, read from the downloaded wheels themselves (``.whl/``).

A wheel's metadata never changes for one name==version, so the snapshot is exact and the test
(tests/bench/test_gpu_check_wheels.py) needs neither the wheels nor any installed package.  Rerun after
changing the list and downloading (the recipe in scripts/gpu_check.sh's header):

    python scripts/gpu_check_wheel_requires.py [.whl]
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "bench" / "gpu_check_wheel_requires.json"


def main(folder: str = ".whl") -> int:
    pins = [line.strip() for line in (REPO / "scripts" / "gpu_check_wheels.txt").read_text().splitlines()]
    snapshot = {}
    for pin in (p for p in pins if p and not p.startswith("#")):
        name, version = pin.split("==")
        stem = re.sub(r"[-_.]+", "_", name).lower()
        (wheel,) = [w for w in (REPO / folder).glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")]
        with zipfile.ZipFile(wheel) as archive:
            meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            message = Parser().parsestr(archive.read(meta).decode())
        snapshot[name] = {"version": version, "wheel": wheel.name, "requires": message.get_all("Requires-Dist") or []}
    OUT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(snapshot)} wheels)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
