"""easel: self-hosted text-to-image, wire-compatible with the hosted Imagen 4 APIs."""

__version__ = "0.1.0"
