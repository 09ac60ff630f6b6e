"""A fleet of real sshd hosts on loopback addresses, started once per session.

``fleet`` is shared and must be left as found: a test that stops a host,
changes its key or fills its state directory puts it back (or uses
``make_fleet`` for hosts of its own).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _local_fleet_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_fleet", ROOT / "examples" / "fleet" / "local_fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_fleet"] = module
    spec.loader.exec_module(module)
    return module


local_fleet = _local_fleet_module()
HOST_NAMES = ["db1", "app1", "app2", "web1", "web2", "web3"]


def _skip_unless_available() -> None:
    reason = local_fleet.unavailable_reason()
    if reason:
        pytest.skip(f"no local sshd fleet: {reason}")


@pytest.fixture(scope="session")
def fleet() -> Iterator[local_fleet.LocalFleet]:
    _skip_unless_available()
    # Short paths: ControlPath sockets must fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="rb-fleet-"))
    started = local_fleet.LocalFleet(directory)
    try:
        yield started.start(HOST_NAMES, first_octet=2)
    finally:
        started.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture()
def make_fleet() -> Iterator[Callable[[list[str], int], local_fleet.LocalFleet]]:
    """Hosts of a test's own (it may kill them or change their keys)."""
    _skip_unless_available()
    made: list[local_fleet.LocalFleet] = []

    def make(names: list[str], first_octet: int) -> local_fleet.LocalFleet:
        started = local_fleet.LocalFleet(Path(tempfile.mkdtemp(prefix="rb-fleet-")))
        made.append(started)
        return started.start(names, first_octet=first_octet)

    yield make
    for started in made:
        started.stop()
        shutil.rmtree(started.directory, ignore_errors=True)
