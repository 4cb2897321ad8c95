"""Python clients of maskline's HTTP API.

- `Client` (sync) and `AsyncClient` (asyncio): typed, they send the bodies and decode the views of
  `maskline.contracts.http_v1` (and `ModelVersion`), retry with back-off, and read their settings
  from the same `MASKLINE_*` variables as the CLI (`ClientSettings.from_env`).
- `JsonClient`: the raw JSON answers as dicts, for scripts that pass them on as they are (the
  CLI's `--json` output) and for tests that check the wire format itself.
"""

from maskline.client.json_client import JsonClient
from maskline.client.typed import ApiError, AsyncClient, Client, ClientSettings, FileChunks

__all__ = ["ApiError", "AsyncClient", "Client", "ClientSettings", "FileChunks", "JsonClient"]
