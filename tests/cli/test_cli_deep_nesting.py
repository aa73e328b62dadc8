"""Documents nested far deeper than any real one (a hostile or broken file): every command that
reads JSON or YAML answers with one error line and exit code 2, and what was stored stays.

The JSON decoders and the schema validator recurse per level (RecursionError); libyaml's C
composer recursed until the C stack overflowed (a segmentation fault), so the YAML case runs
in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsentry.cli import _load, main

_load()
DEEP_ARRAY = "[" * 200_000  # past msgspec's and json's recursion limits
DEEP_OBJECT = '{"a":' * 200_000


def _cyclonedx_nested(levels: int) -> str:
    """A valid-looking CycloneDX SBOM whose components nest `levels` deep (decodes fine)."""
    comp: dict = {"type": "library", "name": "leaf"}
    for i in range(levels):
        comp = {"type": "library", "name": f"c{i}", "components": [comp]}
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
                       "components": [comp]})  # fmt: skip


def _one_error(r) -> None:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    # an SBOM or VEX document must be an object: a top-level array is refused before decoding
    assert len(lines) == 1, r.stderr
    assert "nested too deep" in lines[0] or "expected a JSON object" in lines[0], lines[0]
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "text", [DEEP_ARRAY, DEEP_OBJECT, "deep-sbom"], ids=["array", "object", "sbom"]
)
def test_deep_json_is_one_error_and_loses_nothing(text: str, db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    sbom = ["--manufacturer", "Acme", "--device-model", "Pump", "--version", "1"]
    good = tmp_path / "good.json"
    good.write_text(_cyclonedx_nested(2))
    ok = runner.invoke(main, ["sbom", "import", str(good), "--db", db_url, *sbom])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "deep.json"
    bad.write_text(_cyclonedx_nested(400) if text == "deep-sbom" else text)
    commands = [["sbom", "import", str(bad), "--db", db_url, *sbom[:-1], "2"]]
    if text != "deep-sbom":
        commands += [
            ["intel", "import", str(bad), "--db", db_url],
            ["inventory", "import", str(bad), "--db", db_url],
        ]
        commands.append(["vex", "import", str(bad), "--db", db_url])
    for args in commands:
        _one_error(runner.invoke(main, args))
    listed = runner.invoke(main, ["sbom", "list", "--db", db_url, "--format", "json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1, listed.output


def test_deep_yaml_user_rules_are_one_error_not_a_crash(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "deep.yaml").write_text("[" * 50_000 + "]" * 50_000)
    args = [sys.executable, "-m", "medsentry", "inventory", "fingerprints", "--fingerprints",
            str(rules)]  # fmt: skip
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])  # the crash was -11 (SIGSEGV)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "deep.yaml" in lines[0] and "line 1" in lines[0], r.stderr
