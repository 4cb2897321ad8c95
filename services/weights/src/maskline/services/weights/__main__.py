"""python -m maskline.services.weights"""

from maskline.services.weights.service import NAME, setup
from maskline.services.weights.settings import WeightsSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(WeightsSettings)).run(setup)
