"""The fixture itself: each host is a separate sshd reached by key, with its host key known."""

from __future__ import annotations

import subprocess


def test_each_host_answers_as_itself(fleet):
    for host in fleet.hosts:
        result = subprocess.run(
            ["ssh", "-F", str(fleet.ssh_config), host.name, 'echo "$RUNBOOK_HOST_NAME:$RUNBOOK_HOST_DIR"'],
            capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{host.name}:{host.state_dir}"


def test_a_changed_host_key_is_refused(make_fleet):
    own = make_fleet(["lonely"], 60)
    own.new_host_key(own.hosts[0])
    result = subprocess.run(["ssh", "-F", str(own.ssh_config), "lonely", "true"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert result.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in result.stderr
