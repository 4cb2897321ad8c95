"""The one runtime every maskline service stands on: config, logs, bus, storage, job state, health."""
