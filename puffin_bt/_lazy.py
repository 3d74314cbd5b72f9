"""Imports on first use: torch (about 2 s) and the modules that train networks are imported when a network is
built or trained, not when puffin_bt is, so a re-run whose forecasts all come from the store never imports them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class LazyModule(types.ModuleType):
    """Stands for the module ``name``: the first attribute read imports it; every read is the real module's
    (looked up each time, so a test's monkeypatch of the real module is seen)."""

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self.__name__), attr)


def lazy_functions(module: str, *names: str) -> tuple[Callable, ...]:
    """Stand-ins for the functions ``module.name``, each importing the module when first called."""
    return tuple(_lazy_function(module, name) for name in names)


def _lazy_function(module: str, name: str) -> Callable:
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{module}.{name}``, imported on first call."
    return call


def torch_version() -> str:
    """torch's version without importing it: the installed distribution's (the same string as
    ``torch.__version__``, which is read instead once torch is imported, so both give one store key)."""
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            return importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:  # a torch without package metadata (a source tree)
            import torch
    return torch.__version__


def cuda_impossible() -> bool:
    """Whether torch, not imported yet, can be known to have no GPU without importing it: a CPU-only wheel (its
    version says ``+cpu``) off macOS (Apple's MPS ships in the plain macOS wheels). Once torch is imported it is
    asked instead (False here), as it costs nothing more then."""
    if "torch" in sys.modules:
        return False
    return sys.platform != "darwin" and torch_version().endswith("+cpu")


_resolve_device, = lazy_functions("puffin_bt.training", "resolve_device")


class LazyDevice:
    """Mixin of the fold runners: ``device`` (a torch.device) named by a string, resolved when first used where it
    is the CPU, so that a runner whose forecasts all come from the store never imports torch; any other device is
    checked when the runner is built (``resolve_device`` raises DeviceError for one that is not there)."""

    _device = None

    def _name_device(self, name: str) -> None:
        on_cpu = name.lower() == "cpu" or (name.lower() == "auto" and cuda_impossible())
        self._device = None if on_cpu else _resolve_device(name)

    @property
    def device(self) -> torch.device:
        """Where the networks train and forecast (resolving the CPU imports torch)."""
        if self._device is None:
            self._device = _resolve_device("cpu")
        return self._device

    @property
    def device_type(self) -> str:
        """``device.type`` without importing torch for the CPU (store keys are made of it)."""
        return "cpu" if self._device is None else self._device.type

