"""ASGI entry point for uvicorn workers: settings come from PLACEMENT_* variables, and logging
is configured here, in each worker, from PLACEMENT_LOG_LEVEL, PLACEMENT_LOG_FORMAT and
PLACEMENT_ACCESS_LOG."""

from api.app import create_app
from placement.service.logs import configure
from placement.service.settings import LogSettings

_logs = LogSettings()
configure(_logs.log_level, _logs.log_format, access_log=_logs.access_log)
app = create_app()
