"""python -m maskline.services.gateway"""

from maskline.services.gateway.service import NAME, setup
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(GatewaySettings)).run(setup)
