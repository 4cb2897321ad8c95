"""python -m maskline.services.notify"""

from maskline.services.notify.service import NAME, setup
from maskline.services.notify.settings import NotifySettings
from maskline.shared.config import load
from maskline.shared.service.runtime import Runtime

if __name__ == "__main__":
    Runtime(NAME, load(NotifySettings)).run(setup)
