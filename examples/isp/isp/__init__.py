"""ISP demo application: the system the subscriber-fk runbook operates on.

Modules, one idea each:

- ``settings``  where the database and the state directory are, engines, redaction
- ``errors``    the operator's error, and how database errors are logged
- ``models``    the schema at its newest revision (SQLAlchemy 2 declarative)
- ``releases``  what differs between the code released as v1 and as v2
- ``app``       the HTTP API server
- ``jobs``      the billing and data-cap monitoring tasks
- ``generate``  the deterministic data generator with the seed's hard cases
- ``lifecycle`` reset, init, up, down, status, deploy
- ``backup``    the pre-deployment backup
"""
