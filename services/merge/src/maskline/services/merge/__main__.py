"""python -m maskline.services.merge"""

from maskline.services.merge.service import NAME, setup
from maskline.services.merge.settings import MergeSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(MergeSettings)).run(setup)
