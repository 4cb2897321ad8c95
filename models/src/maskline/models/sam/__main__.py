"""python -m maskline.models.sam OUT_FOLDER: the tiny SAM pair as encoder.onnx and decoder.onnx."""

import sys
from pathlib import Path

from maskline.models.sam import export

for path in export(Path(sys.argv[1])):
    print(path)
