"""python -m maskline.services.audit"""

from maskline.services.audit.service import NAME, setup
from maskline.services.audit.settings import AuditSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(AuditSettings)).run(setup)
