"""The byte formats the stages hand each other in object storage, named by an `ObjectRef`'s
`content_type`: defined here once, encoded and decoded by `maskline.shared.images.codec` alone.

- `PIXELS`: an image's pixels as ingest leaves them for every later stage, so none decodes the
  upload again: a NumPy `.npy` file (no pickling) of `uint8`, shape height x width x 3, in OpenCV's
  blue-green-red order, C-contiguous. Ingest writes it for every segmentation (the working copy:
  the image itself, or its bounded copy when it is larger than the working size).
- `PROBABILITIES`: a model's class probabilities as infer leaves them for merge: `.npy` of
  `float16`, shape classes x height x width, in the geometry the model gave (letterbox padding
  cropped, tiles stitched), each pixel's values summing to about 1.
- `LABEL_MAP`: a prompted job's answer as infer leaves it for merge: `.npy` of `uint8`, shape
  height x width (the working copy's), each pixel the index of the object it belongs to (0: none),
  as `SegmentationInferred.objects` lists them. Added in 1.10.

Images uploaded by clients, and outputs for clients, stay in their own formats (PNG, JPEG, JSON).
Added in contract 1.8; stages still read a PNG working copy written before it.
"""

from __future__ import annotations

PIXELS = "application/x-maskline-pixels"
PROBABILITIES = "application/x-maskline-probabilities"
LABEL_MAP = "application/x-maskline-label-map"
