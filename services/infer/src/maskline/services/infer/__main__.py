"""python -m maskline.services.infer"""

from maskline.services.infer.service import NAME, setup
from maskline.services.infer.settings import InferSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(InferSettings)).run(setup)
