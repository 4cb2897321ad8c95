"""The bundled starter model (`shapes-unet`): architecture, trained weights, sample images."""

from pathlib import Path

# The bundled files, where the installed package keeps them.
FOLDER = Path(__file__).parent
WEIGHTS = FOLDER / "weights" / "model.pt"
SAMPLES = FOLDER / "samples"
