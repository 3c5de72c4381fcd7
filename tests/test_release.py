"""One version everywhere: the package, its metadata, the changelog and the citation."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import ebm_jax

ROOT = Path(__file__).resolve().parents[1]


def _citation_field(name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)\s*$", (ROOT / "CITATION.cff").read_text(), re.M)
    assert match, f"CITATION.cff has no {name}"
    return match.group(1).strip("\"'")


def test_version_and_release_date_agree_everywhere():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ebm_jax.__version__ == version
    assert _citation_field("version") == version
    latest = re.search(
        r"^## (\S+) \((\d{4}-\d\d-\d\d)\)", (ROOT / "CHANGELOG.md").read_text(), re.M
    )
    assert latest, "CHANGELOG.md's first release heading is not '## X.Y.Z (YYYY-MM-DD)'"
    assert latest.group(1) == version
    assert _citation_field("date-released") == latest.group(2)
    readme_version = re.search(r"version\s*=\s*\{([^}]+)\}", (ROOT / "README.md").read_text())
    assert readme_version and readme_version.group(1) == version


def test_changelog_headings_are_releases_newest_first():
    headings = re.findall(
        r"^## (\S+) \((\d{4}-\d\d-\d\d)\)", (ROOT / "CHANGELOG.md").read_text(), re.M
    )
    versions = [tuple(int(part) for part in version.split(".")) for version, _ in headings]
    assert len(versions) >= 2 and versions == sorted(versions, reverse=True)
    dates = [date for _, date in headings]
    assert dates == sorted(dates, reverse=True)
