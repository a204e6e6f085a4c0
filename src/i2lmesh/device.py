"""Torch devices from user text ("auto", "cpu", "cuda", "cuda:1", "mps"), checked before any work starts.

Every command and API that takes a device resolves it here, so a device that does not exist on this machine is one
clear :class:`DeviceError` (a ValueError: the CLI prints it as one line, exit code 2) naming the devices that do,
instead of a CUDA traceback from deep inside the first ``.to(device)``.
"""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that this machine does not have, or text that names no torch device."""


def available_devices() -> list[str]:
    """The devices this process can use: "cpu", then "cuda:0", "cuda:1", ..., then "mps" where present."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(preference: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """A usable torch device from ``preference``.

    "auto" (or None): this process's GPU (``cuda:local_rank``) when CUDA is available, else the CPU. "cuda" without
    an index means ``cuda:local_rank`` (one GPU per torchrun process). Raises :class:`DeviceError` for text that is
    not a device, a device type this build cannot use here (CUDA absent, MPS absent, "meta"), or a GPU index beyond
    the machine's count; the message lists :func:`available_devices`.
    """
    if preference is None or (isinstance(preference, str) and preference.strip().lower() == "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    text = str(preference).strip()
    have = ", ".join(available_devices())
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        hint = " (for a GPU, use cuda)" if text.lower() in ("gpu", "nvidia") else ""
        raise DeviceError(f"device {text!r} is not a device{hint}; available here: {have}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"device {text!r}: CUDA is not available on this machine; available here: {have}")
        index = local_rank if device.index is None else device.index
        if index >= count:
            raise DeviceError(f"device {text!r}: this machine has {count} CUDA device(s); available here: {have}")
        return torch.device("cuda", index)
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "mps" and "mps" in have.split(", "):
        return device
    raise DeviceError(f"device {text!r} cannot run the network here; available here: {have}")


__all__ = ["DeviceError", "available_devices", "resolve_device"]
