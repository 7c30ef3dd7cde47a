"""REST API (FastAPI): thin routes over the placement package."""
