"""python -m maskline.services.train"""

from maskline.services.train.service import NAME, setup
from maskline.services.train.settings import TrainSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(TrainSettings)).run(setup)
