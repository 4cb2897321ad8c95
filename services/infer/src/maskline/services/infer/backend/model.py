"""Triton Python-backend model: runs a segmentation network (TorchScript or ONNX), returns class probabilities.

Copied by the infer service into `<repository>/<model>/<version>/model.py` beside the weights and
`model.json` (format, which output holds the scores, logits or probabilities, precision).
Tensors cross the backend boundary through DLPack: no NumPy copy for TorchScript, and it works with
NumPy 1 and 2 (the NumPy path failed on the GPU machine, see DESIGN.md). ONNX versions run in ONNX
Runtime, with the CUDA execution provider on a GPU instance.
"""

import json
import os

import torch
import torch.utils.dlpack
import triton_python_backend_utils as pb_utils


def pick(out, name):
    """The scores from a network's return value: a tensor, a dict (by name), a tuple (the first).
    The weights service's registration check picks the same way (modelcheck.pick_torch_output); this
    file runs inside Triton's stub, which may not have maskline installed."""
    if isinstance(out, dict):
        return out[name] if name is not None else next(iter(out.values()))
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(folder, "model.json")) as handle:
            spec = json.load(handle)
        self.output = spec.get("output")
        self.softmax = spec.get("kind", "logits") == "logits"
        precision = spec.get("precision", "fp32")
        gpu = args.get("model_instance_kind") == "GPU"
        threads = int(os.environ.get("MASKLINE_TORCH_THREADS", "0"))
        if threads > 0:
            # Every version, ONNX ones included: `execute` runs softmax and the fp16 cast in torch,
            # whose default pool of one thread per core spins beside the other instances.
            torch.set_num_threads(threads)
        if spec.get("format") == "onnx-io":
            self._load_named(os.path.join(folder, "model.onnx"), gpu, int(args.get("model_instance_device_id", 0)), threads)
            return
        if spec.get("format") == "onnx":
            self._load_onnx(os.path.join(folder, "model.onnx"), gpu, int(args.get("model_instance_device_id", 0)), threads)
            return
        if precision != "fp32":
            # int8/hybrid versions hold x86 quantized kernels: CPU only, with the engine they were packed for.
            engines = torch.backends.quantized.supported_engines
            torch.backends.quantized.engine = "x86" if "x86" in engines else "fbgemm"
        if gpu and precision == "fp32":
            self.device = torch.device("cuda", int(args["model_instance_device_id"]))
        else:
            self.device = torch.device("cpu")
        self.model = torch.jit.load(os.path.join(folder, "model.pt"), map_location=self.device).eval()
        self.run = self._run_torchscript

    def _load_onnx(self, path, gpu, device_id, threads):
        import onnxruntime  # only where ONNX versions are served

        options = onnxruntime.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if gpu and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        # A graph exported with a fixed batch of 1 takes the dynamic batcher's requests one at a time.
        self.one_at_a_time = first.shape[0] == 1
        self.output_names = [self.output or self.session.get_outputs()[0].name]
        self.device = torch.device("cpu")
        self.run = self._run_onnx

    def _load_named(self, path, gpu, device_id, threads):
        """A SAM-format part: every input by its name in, every output by its name out (float32)."""
        self._load_onnx(path, gpu, device_id, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.named = True

    def _execute_named(self, requests):
        import numpy  # the stub's own; only this path needs it

        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            outputs = self.session.run(self.output_names, feeds)
            tensors = [
                pb_utils.Tensor(name, numpy.ascontiguousarray(value, dtype=numpy.float32))
                for name, value in zip(self.output_names, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _run_torchscript(self, batch):
        return pick(self.model(batch), self.output)

    def _run_onnx(self, batch):
        names = self.output_names
        array = batch.numpy()
        if self.one_at_a_time and array.shape[0] > 1:
            parts = [self.session.run(names, {self.input_name: array[i : i + 1]})[0] for i in range(array.shape[0])]
            return torch.cat([torch.from_numpy(p) for p in parts])
        return torch.from_numpy(self.session.run(names, {self.input_name: array})[0])

    named = False

    def execute(self, requests):
        if self.named:
            return self._execute_named(requests)
        # The dynamic batcher hands over several requests at once: run them as one batch.
        inputs = [torch.from_dlpack(pb_utils.get_input_tensor_by_name(r, "image").to_dlpack()) for r in requests]
        sizes = [int(x.shape[0]) for x in inputs]
        batch = torch.cat(inputs).to(self.device) if len(inputs) > 1 else inputs[0].to(self.device)
        with torch.inference_mode():
            scores = self.run(batch).float()
            probs = (torch.softmax(scores, dim=1) if self.softmax else scores).half()
        responses = []
        for part in torch.split(probs, sizes):
            tensor = pb_utils.Tensor.from_dlpack("probs", torch.utils.dlpack.to_dlpack(part.contiguous()))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
