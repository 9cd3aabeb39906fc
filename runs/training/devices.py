"""What accelerators JAX sees here: `python -m runs.training.devices` prints it as JSON.

The worker runs this once at start in a subprocess (with the training
interpreter, so it sees what the training child will see) and stores the answer
on its heartbeat row; the web process never imports JAX. `platforms()` maps a
run's `device` choice to JAX_PLATFORMS, which must be set before jax is first
imported (the training and generation children call it before any import).

No Django import: the training child imports this module.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

DEVICE_CHOICES = ("auto", "cpu", "gpu")
DTYPE_CHOICES = ("float32", "bfloat16")
# A run's device choice as JAX_PLATFORMS; None leaves JAX to pick (its order: TPU, GPU, CPU).
JAX_PLATFORMS = {"auto": None, "cpu": "cpu", "gpu": "cuda"}


def use_platform(device: str) -> None:
    """Point JAX at the platform a run chose; call before jax is imported.

    `auto` keeps a JAX_PLATFORMS the operator set for the worker, and otherwise lets JAX choose.
    """
    if device not in JAX_PLATFORMS:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, not {device!r}")
    if "jax" in sys.modules:
        raise RuntimeError("use_platform() must run before jax is imported")
    platform = JAX_PLATFORMS[device]
    if platform is not None:
        os.environ["JAX_PLATFORMS"] = platform


def unavailable(device: str, exc: BaseException) -> str:
    """The error of a run whose device choice JAX could not meet (jax 0.10 raises AssertionError for "cuda"
    without the CUDA plugin, RuntimeError when the plugin finds no GPU)."""
    import jax

    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = f"JAX {jax.__version__} found no device for device={device} ({detail})."
    if device == "gpu":
        message += " Is jax's CUDA plugin installed (make install-gpu) and a GPU visible to the worker?"
    return message


def _host_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _memory_bytes(device: Any) -> int | None:
    if device.platform == "cpu":
        return _host_memory_bytes()
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - some backends do not implement memory_stats
        return None
    limit = stats.get("bytes_limit")
    return int(limit) if limit is not None else None


def describe(devices: list[Any]) -> dict[str, Any]:
    """The platform, count, kind and memory of JAX devices (the first device's platform names them).

    A GPU's memory is what JAX may allocate on it (`bytes_limit`: by default 75% of the card,
    XLA_PYTHON_CLIENT_MEM_FRACTION changes it); a CPU device's is the host's total memory.
    """
    import jax

    platform = devices[0].platform if devices else "cpu"
    return {
        "platform": "gpu" if platform in ("gpu", "cuda", "rocm") else platform,
        "count": len(devices),
        "devices": [{"kind": str(d.device_kind), "memory_bytes": _memory_bytes(d)} for d in devices],
        "jax": jax.__version__,
    }


def probe() -> dict[str, Any]:
    """The devices of JAX's default backend in this process (imports jax)."""
    import jax

    return describe(list(jax.devices()))


def summary(report: dict[str, Any] | None) -> str:
    """One line for people: "GPU × 2 (NVIDIA H200, 139.8 GiB each)", "CPU (2 devices, 15.6 GiB)"."""
    if not report or not report.get("count"):
        return "devices unknown"
    count = int(report["count"])
    platform = str(report.get("platform", "?")).upper()
    items = report.get("devices") or []
    first = items[0] if items else {}
    memory = first.get("memory_bytes")
    size = f"{memory / 2**30:.1f} GiB" if isinstance(memory, int | float) else ""
    if platform == "CPU":
        detail = f"{count} device{'s' if count != 1 else ''}" + (f", {size} host memory" if size else "")
        return f"CPU ({detail})"
    kind = first.get("kind") or platform
    return f"{platform} × {count} ({kind}" + (f", {size} each" if size else "") + ")"


def main() -> int:
    try:
        report = probe()
    except Exception as exc:  # noqa: BLE001 - reported to the worker, which stores the error
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
