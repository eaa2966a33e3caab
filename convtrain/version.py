"""The version, on the ground floor: the kernel cache's folder name and the exported models
carry it, and neither may import the package's face (convtrain/__init__.py, the API)."""

__version__ = "0.1.0"
