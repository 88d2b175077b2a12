"""Report installed packages that ``constraints.txt`` does not pin, or pins at another version.

Usage: ``python -m tests.check_pins [--constraints FILE]``; exit code 0 when every installed
distribution (except the project itself and pip's own tools) matches a pin, 1 otherwise, with one
line per difference. ``make setup`` runs it after installing; a test runs it too.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

IGNORED = {"pip", "setuptools", "wheel", "rrr-agent"}  # installer tools and the project itself


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            raise SystemExit(f"{path}:{n}: not a 'name==version' pin: {raw!r}")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def differences(pins: dict[str, str]) -> list[str]:
    out = []
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"] or "")
        if not name or name in IGNORED or name in seen:
            continue
        seen.add(name)
        version = dist.version
        if name not in pins:
            out.append(f"{name}=={version}: installed but not pinned")
        elif pins[name] != version:
            out.append(f"{name}=={version}: pinned at {pins[name]}")
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--constraints", type=Path, default=root / "constraints.txt")
    args = parser.parse_args()
    pins = read_pins(args.constraints)
    found = differences(pins)
    for line in found:
        print(line)
    installed = len(list(metadata.distributions()))
    print(f"{installed} installed distributions, {len(pins)} pins, {len(found)} differences",
          file=sys.stderr)  # fmt: skip
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
