"""lit_ffn: research on transformer feed-forward blocks with PyTorch Lightning."""

__version__ = "0.1.0"
