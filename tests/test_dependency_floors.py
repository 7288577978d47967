"""Known advisories, kept by hand: no floor in pyproject.toml and no installed version below a fix.

No vulnerability database is reachable from CI (pip-audit's PyPI service needs the per-version
JSON API, its OSV service api.osv.dev; neither answers here, and pip-audit then skips every
package and reports "No known vulnerabilities found"). So the advisories that matter are listed
here, with the first fixed release, and SECURITY.md says how to update them.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# distribution → (first release past every advisory we know of, the advisories)
FIXED: dict[str, tuple[str, str]] = {
    "torch": ("2.10", "CVE-2025-32434 (2.6), CVE-2025-3730 (2.8), CVE-2025-2999, CVE-2025-3001"),
    "pillow": ("12.2", "CVE-2025-48379 (11.3.0), heap writes fixed in 12.1.1 and 12.2.0"),
    "aiohttp": ("3.13.4", "CVE-2025-53643, CVE-2025-69223, CVE-2026-22815 and others"),
    "tqdm": ("4.66.3", "CVE-2024-34062"),
    # Disputed by the vendor (Ray's APIs are unauthenticated unless RAY_AUTH_MODE=token, from
    # 2.52; on by default for local clusters from 2.59): README and SECURITY.md say how to run it.
    "ray": ("2.60", "CVE-2023-48022 (ShadowRay: unauthenticated Jobs API)"),
}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = {}
    for requirement in project["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", requirement)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_every_floor_is_past_the_known_advisories() -> None:
    declared = floors()
    behind = {
        name: (declared.get(name), fixed, why)
        for name, (fixed, why) in FIXED.items()
        if name not in declared or version_tuple(declared[name]) < version_tuple(fixed)
    }
    assert behind == {}


def test_no_installed_version_is_below_a_fix() -> None:
    installed = {}
    for name in FIXED:
        try:
            installed[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    behind = {
        name: (version, FIXED[name][0])
        for name, version in installed.items()
        if version_tuple(version) < version_tuple(FIXED[name][0])
    }
    assert behind == {}
