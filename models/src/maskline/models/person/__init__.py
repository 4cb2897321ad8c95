"""The bundled person model (`person-selfie`): MediaPipe's selfie segmentation network, converted.

Source: `mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite` in the `mediapipe==0.10.14`
wheel (Apache-2.0, Google LLC; NOTICE keeps the notice). `convert.py` rebuilds it reproducibly.
"""

from pathlib import Path

FOLDER = Path(__file__).parent
WEIGHTS = FOLDER / "weights" / "model.pt"
ONNX = FOLDER / "weights" / "model.onnx"
LABELS = ("background", "person")
MEDIAPIPE = "mediapipe==0.10.14"
TFLITE_MEMBER = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
TFLITE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
