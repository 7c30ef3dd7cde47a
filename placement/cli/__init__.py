"""The `placement` command line."""
