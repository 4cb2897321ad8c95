"""The code version every service reports (health, NATS micro info) and every model version records."""

from importlib import metadata

CODE_VERSION = metadata.version("maskline-runtime")
