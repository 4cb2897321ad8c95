"""python -m maskline.services.quantize"""

from maskline.services.quantize.service import NAME, setup
from maskline.services.quantize.settings import QuantizeSettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(QuantizeSettings)).run(setup)
