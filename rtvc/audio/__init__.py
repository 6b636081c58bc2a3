"""Live audio I/O: an :class:`~rtvc.engine.Engine` on devices and files (the only package that
imports sounddevice).

One room per job: :mod:`~rtvc.audio.devices` (device lookup and checks), :mod:`~rtvc.audio.streams`
(the compiled and Python callbacks; :mod:`~rtvc.audio.pulse`, rtvc's libpulse client),
:mod:`~rtvc.audio.files` (the file clock and writer), :mod:`~rtvc.audio.rings` (the rings, the
shared-memory block, wake-ups), :mod:`~rtvc.audio.worker` (the per-block job),
:mod:`~rtvc.audio.process` (the worker process and its messages), :mod:`~rtvc.audio.supervisor`
(reconnects, respawns, faults), and :mod:`~rtvc.audio.runner`, whose
:class:`~rtvc.audio.runner.LiveRunner` composes them from a :class:`~rtvc.audio.config.RunnerConfig`.
"""

from .config import BLOCK_MS_RANGE, PROFILES, WORKERS, RunnerConfig
from .devices import (BACKENDS, check_settings, default_rate, device_name, has_devices, list_devices,
                      pulse_device_table, resolve_device)
from .runner import LiveRunner
from .streams import CALLBACKS

__all__ = ["LiveRunner", "RunnerConfig", "list_devices", "resolve_device", "check_settings", "default_rate",
           "has_devices", "device_name", "pulse_device_table", "BLOCK_MS_RANGE", "CALLBACKS", "BACKENDS", "PROFILES",
           "WORKERS"]
