"""The sdist and wheel as PyPI would get them: built by ``python -m build``, checked by twine."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "Could not find a version that satisfies" in built.stdout + built.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return out


@pytest.mark.slow
def test_sdist_has_license_and_typing_marker_but_no_tests(dist: Path) -> None:
    (sdist,) = dist.glob("gated_runbook-*.tar.gz")
    names = tarfile.open(sdist).getnames()
    top = names[0].split("/")[0]
    assert f"{top}/LICENSE" in names
    assert f"{top}/src/runbook/py.typed" in names
    assert not [n for n in names if n.startswith((f"{top}/tests/", f"{top}/bench/", f"{top}/.ci/"))]


@pytest.mark.slow
def test_wheel_metadata_names_license_extras_and_command(dist: Path) -> None:
    (wheel,) = dist.glob("gated_runbook-*.whl")
    archive = zipfile.ZipFile(wheel)
    metadata = archive.read(next(n for n in archive.namelist() if n.endswith("/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    for extra in ("postgresql", "mysql", "alembic", "all", "test"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "runbook/py.typed" in archive.namelist()
    entry_points = archive.read(next(n for n in archive.namelist() if n.endswith("/entry_points.txt"))).decode()
    assert "runbook = runbook.cli:main" in entry_points
    # psycopg, PyMySQL and alembic only through their extras.
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [line for line in base if any(name in line.lower() for name in ("psycopg", "pymysql", "alembic"))]


@pytest.mark.slow
def test_twine_check_passes(dist: Path) -> None:
    checked = subprocess.run([sys.executable, "-m", "twine", "check", *map(str, dist.iterdir())], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2


@pytest.mark.slow
def test_wheel_ships_every_doc_as_in_the_repository(dist: Path) -> None:
    """src/runbook/docs is a link to docs/: the wheel carries the repository's files, byte for byte."""
    (wheel,) = dist.glob("gated_runbook-*.whl")
    archive = zipfile.ZipFile(wheel)
    for doc in (ROOT / "docs").glob("*.md"):
        assert archive.read(f"runbook/docs/{doc.name}") == doc.read_bytes(), doc.name


@pytest.mark.slow
def test_runbook_docs_works_from_an_installed_wheel(dist: Path, tmp_path: Path) -> None:
    """pip installs the wheel (its dependencies are this environment's); `runbook docs format`,
    run away from the checkout, prints the reference from the installed package."""
    (wheel,) = dist.glob("gated_runbook-*.whl")
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    # The installed copy comes first on the path, before the editable install's src/.
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import runbook; print(runbook.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    shown = subprocess.run([sys.executable, "-m", "runbook", "docs", "format"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (ROOT / "docs" / "runbook-format.md").read_text()
    listed = subprocess.run([sys.executable, "-m", "runbook", "docs"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "format          Runbook file format" in listed.stdout
