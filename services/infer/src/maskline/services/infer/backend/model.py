"""Triton Python-backend model: runs a TorchScript segmentation network, returns class probabilities.

Copied by the infer service into `<repository>/<model>/<version>/model.py` beside `model.pt`.
Tensors cross the backend boundary through DLPack: no NumPy copy, and it works with NumPy 1 and 2
(the NumPy path failed on the GPU machine, see DESIGN.md).
"""

import os

import torch
import torch.utils.dlpack
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        precision_file = os.path.join(folder, "precision.txt")
        precision = "fp32"
        if os.path.exists(precision_file):
            with open(precision_file) as handle:
                precision = handle.read().strip()
        if precision != "fp32":
            # int8/hybrid versions hold x86 quantized kernels: CPU only, with the engine they were packed for.
            engines = torch.backends.quantized.supported_engines
            torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm"
        if args.get("model_instance_kind") == "GPU" and precision == "fp32":
            self.device = torch.device("cuda", int(args["model_instance_device_id"]))
        else:
            self.device = torch.device("cpu")
            threads = int(os.environ.get("MASKLINE_TORCH_THREADS", "0"))
            if threads > 0:
                torch.set_num_threads(threads)
        path = os.path.join(folder, "model.pt")
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def execute(self, requests):
        # The dynamic batcher hands over several requests at once: run them as one batch.
        inputs = [torch.from_dlpack(pb_utils.get_input_tensor_by_name(r, "image").to_dlpack()) for r in requests]
        sizes = [int(x.shape[0]) for x in inputs]
        batch = torch.cat(inputs).to(self.device) if len(inputs) > 1 else inputs[0].to(self.device)
        with torch.inference_mode():
            probs = torch.softmax(self.model(batch).float(), dim=1).half()
        responses = []
        for part in torch.split(probs, sizes):
            tensor = pb_utils.Tensor.from_dlpack("probs", torch.utils.dlpack.to_dlpack(part.contiguous()))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
