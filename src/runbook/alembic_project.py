"""An alembic project as the ``alembic`` step and the ``alembic_revision`` check both see it.

One resolution for both, alembic's own: the ``config`` path of a step or
check is taken relative to the runbook's directory (it belongs to the runbook,
like a SQL file), and inside the ini alembic resolves a relative
``script_location`` against the working directory, as the ``alembic`` command
does, unless it is written ``%(here)s/...`` (relative to the ini file) or as
``package:directory``. Nothing here rewrites it, so the step, the check and
``alembic -c`` run from the same directory read the same scripts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.errors import RunbookError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


class AlembicProjectError(RunbookError):
    """An alembic.ini or its script directory cannot be found."""


def existing_ini(ini: Path, written: str) -> Path:
    """``ini`` (the ``config`` of a step or check, as ``written``, joined to the runbook's directory) if it is a file."""
    if not ini.is_file():
        raise AlembicProjectError(f"alembic config {written} not found: no file {ini} (a relative config starts at the runbook's directory)")
    return ini


def load_config(ini: Path, url: str | None = None) -> Config:
    from alembic.config import Config

    config = Config(str(ini))
    # Asks env.py not to call logging.config.fileConfig, which would replace
    # the process's log handlers, the step's capture among them.
    config.attributes["configure_logger"] = False
    if url is not None:
        # Main options go through configparser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def script_directory(config: Config) -> ScriptDirectory:
    """The scripts ``config`` names, or an error that says how alembic resolved the location."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    location = config.get_main_option("script_location")
    try:
        return ScriptDirectory.from_config(config)
    except CommandError as err:
        if location and ":" not in location and not os.path.isabs(location):
            raise AlembicProjectError(
                f"script_location {location!r} of {config.config_file_name} is not a directory under the working directory "
                f"{Path.cwd()}: alembic resolves a relative script_location there, not beside the ini; run runbook where "
                "`alembic` is run from, or write it as %(here)s/PATH (relative to the ini) or package:PATH"
            ) from err
        raise AlembicProjectError(f"{config.config_file_name}: {err}") from err
