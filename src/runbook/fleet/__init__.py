"""Steps on remote hosts: the inventory, the OpenSSH transport and rolling batches.

``inventory`` resolves ``on:`` to hosts, ``remote`` builds what reaches a
host's shell, ``ssh`` runs it over OpenSSH with one shared connection per
host, ``rollout`` runs a step host by host in batches and records each host's
attempt in the state store.
"""
