"""A Segment-Anything network built from the `segment-anything` package's own code, small and seeded,
exported as a SAM-format pair (image encoder + prompt decoder, the package's ONNX layout).

No pretrained SAM weights can be installed on these machines, so this shows the format rather
than SAM's quality: its masks are those of random weights. What it proves is that maskline serves
the pair users bring exactly as running it directly would (tests/e2e/test_sam_format.py).

    python -m maskline.models.sam OUT_FOLDER   # writes encoder.onnx and decoder.onnx
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from functools import partial
from pathlib import Path
from typing import Any

#: The tiny configuration: a 256-px input, 16-px patches (a 16 x 16 embedding of 64 channels), a
#: two-block ViT and a two-layer two-way transformer.
IMAGE_SIZE = 256
PATCH = 16
EMBEDDING = 64
SEED = 0
#: segment-anything's normalisation (pixels 0..255).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def _modules() -> tuple[Any, Any]:
    """`segment_anything.modeling` and `segment_anything.utils.onnx`, without the package's own
    `__init__`: it imports the predictor, which needs torchvision, and no CPU build of torchvision
    for this torch is on the registries (a CUDA one would drag in gigabytes)."""
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("segment-anything is not installed (pip install segment-anything==1.0)")
        root = Path(next(iter(spec.submodule_search_locations)))
        for name, folder in (("segment_anything", root), ("segment_anything.utils", root / "utils")):
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    return importlib.import_module("segment_anything.modeling"), importlib.import_module("segment_anything.utils.onnx")


def build() -> Any:
    """The tiny SAM, seeded: the package's `Sam` of its `ImageEncoderViT`, `PromptEncoder` and `MaskDecoder`."""
    import torch

    modeling, _ = _modules()
    torch.manual_seed(SEED)
    grid = IMAGE_SIZE // PATCH
    encoder = modeling.ImageEncoderViT(
        depth=2,
        embed_dim=96,
        img_size=IMAGE_SIZE,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=2,
        patch_size=PATCH,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=[1],
        window_size=4,
        out_chans=EMBEDDING,
    )
    prompts = modeling.PromptEncoder(
        embed_dim=EMBEDDING, image_embedding_size=(grid, grid), input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=8
    )
    decoder = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=EMBEDDING, mlp_dim=256, num_heads=2),
        transformer_dim=EMBEDDING,
        iou_head_depth=2,
        iou_head_hidden_dim=64,
    )
    sam = modeling.Sam(
        image_encoder=encoder,
        prompt_encoder=prompts,
        mask_decoder=decoder,
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


def export(folder: Path) -> tuple[Path, Path]:
    """encoder.onnx (torch.onnx) and decoder.onnx (the package's `SamOnnxModel`, as its
    `scripts/export_onnx_model.py` exports it: one mask per prompt, any number of points)."""
    import torch

    _, onnx_utils = _modules()
    sam = build()
    folder.mkdir(parents=True, exist_ok=True)
    encoder_path, decoder_path = folder / "encoder.onnx", folder / "decoder.onnx"
    grid = IMAGE_SIZE // PATCH
    # SAM's code branches on tensor shapes (padding for windows): fixed for these static sizes, so the
    # tracer's warnings about it are expected here (and would be errors under pytest's filters).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit._trace.TracerWarning)
        # Its relative-position tables are indexed with aranges, never negative indices: the
        # exporter's caution about negative indices does not apply.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            sam.image_encoder,
            (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(encoder_path),
            input_names=["image"],
            output_names=["image_embeddings"],
            opset_version=17,
            dynamo=False,
        )
        dummy = {
            "image_embeddings": torch.randn(1, EMBEDDING, grid, grid),
            "point_coords": torch.randint(0, IMAGE_SIZE, (1, 5, 2), dtype=torch.float),
            "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
            "mask_input": torch.randn(1, 1, 4 * grid, 4 * grid),
            "has_mask_input": torch.tensor([1], dtype=torch.float),
            "orig_im_size": torch.tensor([IMAGE_SIZE, IMAGE_SIZE], dtype=torch.float),
        }
        torch.onnx.export(
            onnx_utils.SamOnnxModel(sam, return_single_mask=True),
            tuple(dummy.values()),
            str(decoder_path),
            input_names=list(dummy),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=17,
            dynamo=False,
        )
    return encoder_path, decoder_path
