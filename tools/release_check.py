"""``make release-check``: the files a reader cites and installs from agree with each other.

    python tools/release_check.py [<repository root>]

Checks, each problem one line, exit status 1 on any:

* ``pyproject.toml`` [project]: name, version, description, readme, license, authors, urls;
* ``LICENSE``: present, and the licence ``pyproject.toml`` names (its SPDX id's text);
* ``CITATION.cff``: valid YAML with CFF's required keys (``cff-version``, ``message``, ``title``,
  ``authors``), ``version`` equal to pyproject's, ``license`` equal to pyproject's, a
  ``date-released``, and the paper (arXiv:2402.09613) as ``preferred-citation`` or in ``references``;
* ``CHANGELOG.md``: a ``## [<version>]`` section for pyproject's version;
* ``.zenodo.json``: valid JSON with title, creators, upload_type, license and ``version`` equal to
  pyproject's.
"""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPER_ARXIV = "2402.09613"
CFF_REQUIRED = ("cff-version", "message", "title", "authors")
PROJECT_REQUIRED = ("name", "version", "description", "readme", "license", "authors", "urls")
# the line a licence's text starts with (SPDX id -> marker), for the licences this project could use
LICENSE_MARKERS = {"MIT": "MIT License", "BSD-3-Clause": "Redistribution and use in source and binary forms",
                   "Apache-2.0": "Apache License"}


def check(root: Path = ROOT) -> list[str]:
    root = Path(root)
    problems: list[str] = []
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        return [f"pyproject.toml: cannot read its [project] table ({exc})"]
    for key in PROJECT_REQUIRED:
        if not project.get(key):
            problems.append(f"pyproject.toml: [project] has no {key}")
    version = str(project.get("version", ""))
    lic = project.get("license")
    spdx = lic if isinstance(lic, str) else (lic or {}).get("text") if isinstance(lic, dict) else None

    # LICENSE
    lf = root / "LICENSE"
    if not lf.is_file() or not lf.read_text().strip():
        problems.append("LICENSE: missing or empty")
    elif spdx in LICENSE_MARKERS and LICENSE_MARKERS[spdx] not in lf.read_text():
        problems.append(f"LICENSE: pyproject.toml says {spdx}, but LICENSE is not its text")

    # CITATION.cff
    import yaml
    try:
        cff = yaml.safe_load((root / "CITATION.cff").read_text())
    except OSError:
        problems.append("CITATION.cff: missing")
        cff = None
    except yaml.YAMLError as exc:
        problems.append(f"CITATION.cff: not valid YAML ({str(exc).splitlines()[0]})")
        cff = None
    if cff is not None:
        if not isinstance(cff, dict):
            problems.append("CITATION.cff: not a mapping of keys")
        else:
            for key in CFF_REQUIRED:
                if not cff.get(key):
                    problems.append(f"CITATION.cff: required key {key} missing or empty")
            if str(cff.get("version", "")) != version:
                problems.append(f"CITATION.cff: version {cff.get('version')!r} differs from pyproject.toml's {version!r}")
            if spdx and cff.get("license") != spdx:
                problems.append(f"CITATION.cff: license {cff.get('license')!r} differs from pyproject.toml's {spdx!r}")
            if not cff.get("date-released"):
                problems.append("CITATION.cff: no date-released")
            cited = [cff.get("preferred-citation") or {}, *(cff.get("references") or [])]
            if not any(PAPER_ARXIV in json.dumps(c, default=str) for c in cited):
                problems.append(f"CITATION.cff: the paper (arXiv:{PAPER_ARXIV}) is neither preferred-citation nor a reference")

    # CHANGELOG.md
    try:
        changelog = (root / "CHANGELOG.md").read_text()
        if f"## [{version}]" not in changelog:
            problems.append(f"CHANGELOG.md: no '## [{version}]' section for the current version")
    except OSError:
        problems.append("CHANGELOG.md: missing")

    # .zenodo.json
    try:
        zen = json.loads((root / ".zenodo.json").read_text())
    except OSError:
        problems.append(".zenodo.json: missing")
        zen = None
    except ValueError as exc:
        problems.append(f".zenodo.json: not valid JSON ({exc})")
        zen = None
    if zen is not None:
        if not isinstance(zen, dict):
            problems.append(".zenodo.json: not a JSON object")
        else:
            for key in ("title", "creators", "upload_type", "license"):
                if not zen.get(key):
                    problems.append(f".zenodo.json: {key} missing or empty")
            if str(zen.get("version", "")) != version:
                problems.append(f".zenodo.json: version {zen.get('version')!r} differs from pyproject.toml's {version!r}")
            if spdx and str(zen.get("license", "")).upper() != spdx.upper():
                problems.append(f".zenodo.json: license {zen.get('license')!r} differs from pyproject.toml's {spdx!r}")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else ROOT
    problems = check(root)
    for p in problems:
        print(f"release-check: {p}", file=sys.stderr)
    if problems:
        print(f"release-check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    print(f"release-check: ok (version {version}: pyproject.toml, LICENSE, CITATION.cff, CHANGELOG.md, .zenodo.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
