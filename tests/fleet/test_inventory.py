"""Inventories: inline hosts and groups, Ansible INI and YAML files, ``on:`` resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.fleet.batches import batches, too_many_failures
from runbook.fleet.inventory import InventoryError, from_environment

INI = """
# a comment
[db]
db1 ansible_host=10.0.0.5 ansible_port=2222 ansible_user=deploy role=primary

[app]
app[1:3] ansible_user=app

[app:vars]
pool=api

[web]
web1 deploy="deploy --to v2"  # a comment

[prod:children]
db
app

[all:vars]
region=eu
"""

YAML = """
all:
  vars: {region: eu}
  children:
    db:
      hosts:
        db1: {ansible_host: 10.0.0.5, ansible_port: 2222, role: primary}
    app:
      vars: {pool: api}
      hosts:
        app1:
        app2: {pool: celery}
"""


def test_ansible_ini(tmp_path: Path) -> None:
    (tmp_path / "hosts.ini").write_text(INI)
    inventory = from_environment({}, {}, "hosts.ini", tmp_path)
    assert [h.name for h in inventory.select("prod")] == ["db1", "app1", "app2", "app3"]
    db1 = inventory.hosts["db1"]
    assert (db1.address, db1.port, db1.user) == ("10.0.0.5", 2222, "deploy")
    assert db1.vars == {"role": "primary", "region": "eu"}
    assert inventory.hosts["app2"].vars == {"pool": "api", "region": "eu"}
    assert inventory.hosts["app2"].user == "app"
    assert inventory.hosts["web1"].vars["deploy"] == "deploy --to v2"


def test_ansible_yaml(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(YAML)
    inventory = from_environment({}, {}, "hosts.yaml", tmp_path)
    assert [h.name for h in inventory.select("app")] == ["app1", "app2"]
    assert inventory.hosts["app2"].vars == {"region": "eu", "pool": "celery"}
    assert inventory.hosts["db1"].template_value()["address"] == "10.0.0.5"
    assert [h.name for h in inventory.select(["db1", "app"])] == ["db1", "app1", "app2"]


def test_inline_hosts_and_groups() -> None:
    inventory = from_environment({"db1": {"address": "127.0.0.2", "vars": {"x": 1}}, "app1": None}, {"app": ["app1"], "everything": ["app", "db1"]}, None, Path("."))
    assert [h.name for h in inventory.select("everything")] == ["db1", "app1"]
    assert inventory.hosts["db1"].vars == {"x": 1}
    assert [h.name for h in inventory.select("all")] == ["db1", "app1"]


def test_unknown_names_are_errors() -> None:
    inventory = from_environment(["a"], {"g": ["a"]}, None, Path("."))
    with pytest.raises(InventoryError, match="'nope' is neither a host nor a group"):
        inventory.select("nope", "steps.x.on")
    with pytest.raises(InventoryError, match="neither a host nor a group"):
        from_environment(["a"], {"g": ["b"]}, None, Path("."))
    with pytest.raises(InventoryError, match="inventory"):
        from_environment({}, {}, "missing.ini", Path("/nonexistent"))


def test_batches_and_max_fail() -> None:
    assert batches(list("abcde"), 2, 5) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches(list("abcde"), "40%", 5) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches(list("abc"), None, 3) == [["a", "b", "c"]]
    assert too_many_failures(1, 4, 0) and not too_many_failures(1, 4, 1)
    assert not too_many_failures(1, 4, "25%") and too_many_failures(2, 4, "25%")
