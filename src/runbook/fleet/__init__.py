"""Steps on remote hosts: the inventory, the OpenSSH transport and rolling batches.

``inventory`` resolves ``on:`` to hosts, ``remote`` builds what reaches a
host's shell, ``ssh`` runs it over OpenSSH with one shared connection per
host, ``hostrun`` runs one command on one host, ``rollout`` runs a step host
by host in batches and records each host's attempt in the state store,
``checks`` evaluates checks on hosts, ``side_by_side`` runs ``concurrent``
steps at once, ``validate`` is what the loader and the planner refuse.
"""
