"""The package version, in a module of its own: the forecast store keys entries with it, and no
submodule may import the package root (which imports everything) to read it."""

__version__ = "0.1.0"
