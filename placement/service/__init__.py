"""The service: settings, building the runtime with its actuators and loops, and the HTTP workers.
The API, the operator and the CLI start everything through this package."""
