"""ASGI entry point for uvicorn workers: settings come from PLACEMENT_* variables."""

from api.app import create_app

app = create_app()
