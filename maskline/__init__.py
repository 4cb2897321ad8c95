"""maskline: image segmentation services on NATS, object storage and Triton."""

__version__ = "0.1.0"
