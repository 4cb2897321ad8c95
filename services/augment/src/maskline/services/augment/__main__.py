"""python -m maskline.services.augment"""

from maskline.services.augment.service import NAME, setup
from maskline.services.augment.settings import AugmentSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(AugmentSettings)).run(setup)
