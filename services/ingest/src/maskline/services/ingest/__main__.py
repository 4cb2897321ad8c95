"""python -m maskline.services.ingest"""

from maskline.services.ingest.service import NAME, setup
from maskline.services.ingest.settings import IngestSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(IngestSettings)).run(setup)
