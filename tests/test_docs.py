"""The documentation: a README of a few screens carrying the two commands CI runs, a docs site whose pages,
images and API reference are complete and build strictly, and a tutorial notebook kept without outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
INSTALL = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]" '
    "&& python train.py experiment=quickstart"
)
TEST_COMMAND = ". .venv/bin/activate && python -m pytest -q --slow"


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_readme_is_a_few_screens_and_carries_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    assert INSTALL in lines
    assert TEST_COMMAND in lines


def test_ci_runs_the_readme_test_command_last_after_the_docs() -> None:
    commands = [
        line for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert commands[-1] == TEST_COMMAND.split("&& ", 1)[1]
    assert any("mkdocs build --strict" in c for c in commands)
    assert any("--nbmake docs/tutorial.ipynb" in c for c in commands)


def test_every_image_and_local_link_of_the_docs_exists() -> None:
    for page in _pages():
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_api_reference_covers_the_public_api() -> None:
    import fls

    reference = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^::: ([\w.]+)$", reference, flags=re.M))
    for name in fls.__all__:
        assert {f"fls.api.{name}", f"fls.errors.{name}", f"fls.{name}"} & documented, name
    assert set(re.findall(r"([\w-]+\.md)", (ROOT / "mkdocs.yml").read_text())) == {p.name for p in DOCS.glob("*.md")}


def test_tutorial_notebook_is_kept_without_outputs() -> None:
    notebook = json.loads((DOCS / "tutorial.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
    assert any("import fls" in "".join(cell["source"]) for cell in code)


@pytest.mark.slow
def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason='the docs extra: pip install -e ".[docs]"')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site/api/index.html").read_text().count("Parameters") >= 9
