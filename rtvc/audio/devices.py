"""Device lookup: the devices PortAudio (or the PulseAudio server) offers, a device spec turned
into a device, and a combination of devices, channels and rate checked before a stream opens.

:class:`DeviceSet` is what a runner resolves its ``input``/``output``/``monitor`` specs to: device
indices (PortAudio) or sink / source names (pulse), and the channels the input opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, DeviceError
from ..resampling import SUPPORTED_RATES

__all__ = ["list_devices", "pulse_device_table", "resolve_device", "check_settings", "default_rate", "has_devices",
           "device_name", "describe", "load_sounddevice", "DeviceSet", "BACKENDS"]

BACKENDS = ("portaudio", "pulse")
"""``portaudio``: PortAudio (ALSA, and PulseAudio through ALSA's ``pulse`` plugin; CoreAudio,
WASAPI); ``pulse``: rtvc's own libpulse client (:mod:`rtvc.audio.pulse`; PulseAudio or PipeWire-pulse)."""
_KIND_KEY = {"input": "max_input_channels", "output": "max_output_channels"}


def load_sounddevice() -> Any:
    """Import sounddevice; a missing or broken PortAudio is a DeviceError, not a traceback."""
    try:
        import sounddevice as sd
    except OSError as e:  # libportaudio missing
        raise DeviceError(f"PortAudio cannot be loaded ({e}); install libportaudio2") from e
    except Exception as e:  # sounddevice initialises PortAudio at import: PortAudioError
        raise DeviceError(f"PortAudio failed to initialise ({type(e).__name__}: {e})") from e
    return sd



def list_devices(backend: str = "portaudio") -> list[dict[str, Any]]:
    """All audio devices PortAudio sees (``backend="pulse"``: the PulseAudio server's sources and
    sinks, in the same shape; see :func:`pulse_device_table`).

    Returns
    -------
    list of dict
        One per device: ``index``, ``name``, ``hostapi`` (name), ``max_input_channels``,
        ``max_output_channels``, ``default_samplerate`` (Hz), ``default_input`` and
        ``default_output`` (bool: this is the system default for that direction).

    Raises
    ------
    DeviceError
        PortAudio cannot be loaded or initialised (pulse: no server reachable).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"audio backend {backend!r} is not known; expected one of {BACKENDS}")
    if backend == "pulse":
        from .pulse import list_pulse_devices

        return pulse_device_table(list_pulse_devices())
    sd = load_sounddevice()
    try:
        devs = sd.query_devices()
        apis = sd.query_hostapis()
        d_in, d_out = sd.default.device
    except sd.PortAudioError as e:
        raise DeviceError(f"PortAudio failed to list devices: {e}") from e
    out = []
    for i, d in enumerate(devs):
        out.append({
            "index": i,
            "name": str(d["name"]),
            "hostapi": str(apis[d["hostapi"]]["name"]) if 0 <= d["hostapi"] < len(apis) else "?",
            "max_input_channels": int(d["max_input_channels"]),
            "max_output_channels": int(d["max_output_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
            "default_input": i == d_in,
            "default_output": i == d_out,
        })
    return out


def pulse_device_table(listing: dict[str, Any]) -> list[dict[str, Any]]:
    """A PulseAudio listing (:func:`rtvc.audio.pulse.list_pulse_devices`) as :func:`list_devices` rows:
    sources first (input channels), then sinks (output channels); ``index`` is the server's
    index, which sources and sinks number separately, so ``kind`` says which one a row is."""
    rows = []
    for key, kind, ch_key in (("sources", "source", "max_input_channels"), ("sinks", "sink", "max_output_channels")):
        dflt = listing.get("default_source" if kind == "source" else "default_sink")
        for d in listing[key]:
            rows.append({"index": d["index"], "name": d["name"], "hostapi": "PulseAudio", "kind": kind,
                         "description": d["description"], "max_input_channels": 0, "max_output_channels": 0,
                         ch_key: d["channels"], "default_samplerate": float(d["rate"]),
                         "default_input": kind == "source" and d["name"] == dflt,
                         "default_output": kind == "sink" and d["name"] == dflt})
    return rows


def has_devices() -> bool:
    """True when PortAudio works and sees at least one input and one output device."""
    try:
        devs = list_devices()
    except DeviceError:
        return False
    return any(d["max_input_channels"] > 0 for d in devs) and any(d["max_output_channels"] > 0 for d in devs)


def describe(d: dict[str, Any]) -> str:
    return f"[{d['index']}] {d['name']} ({d['hostapi']}, {d['max_input_channels']} in, {d['max_output_channels']} out)"


def resolve_device(spec: int | str | None, kind: str = "input") -> int:
    """Turn a device spec into a PortAudio device index.

    Parameters
    ----------
    spec
        ``None`` (the system default), an index (int or digit string), or a case-insensitive
        substring of the device name. A name that matches one device exactly wins over
        substring matches; among several substring matches, those without channels in the
        wanted direction are ignored.
    kind
        ``"input"`` or ``"output"``.

    Raises
    ------
    DeviceError
        No such device (the message lists the candidates), an ambiguous name (it lists the
        matches), or a device without channels in the wanted direction.
    """
    if kind not in _KIND_KEY:
        raise ConfigError(f"device kind {kind!r} is not known; expected 'input' or 'output'")
    key = _KIND_KEY[kind]
    devs = list_devices()
    capable = [d for d in devs if d[key] > 0]
    cands = "; ".join(describe(d) for d in capable) or "none"
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "default"):
        defaults = [d for d in devs if d[f"default_{kind}"]]
        if not defaults:
            if len(capable) == 1:
                return int(capable[0]["index"])
            raise DeviceError(f"there is no default {kind} device; pick one of: {cands}")
        d = defaults[0]
    elif isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.strip().isdigit()):
        i = int(spec)
        if not (0 <= i < len(devs)):
            raise DeviceError(f"{kind} device index {i} does not exist; expected one of: {cands}")
        d = devs[i]
    elif isinstance(spec, str) and spec.strip():
        s = spec.strip().lower()
        exact = [d for d in devs if d["name"].lower() == s]
        matches = exact or [d for d in devs if s in d["name"].lower()]
        if not matches:
            raise DeviceError(f"no {kind} device matches {spec!r}; candidates: {cands}")
        if len(matches) > 1:
            usable = [d for d in matches if d[key] > 0]
            if len(usable) > 1:
                raise DeviceError(f"{kind} device {spec!r} is ambiguous; it matches: "
                                  + "; ".join(describe(d) for d in usable) + " (give an index or a longer name)")
            matches = usable or matches[:1]
        d = matches[0]
    else:
        raise DeviceError(f"{kind} device {spec!r} is not valid; expected an index or a name substring")
    if d[key] <= 0:
        raise DeviceError(f"device {describe(d)} has no {kind} channels; {kind} devices: {cands}")
    return int(d["index"])


def device_name(index: int) -> str:
    """Name of device ``index`` (for status lines and :attr:`LiveRunner.devices`)."""
    for d in list_devices():
        if d["index"] == index:
            return str(d["name"])
    raise DeviceError(f"device index {index} does not exist")


def default_rate(index: int | None) -> int:
    """The device's default rate if the engine supports it, else 48000 Hz."""
    if index is None:
        return 48_000
    for d in list_devices():
        if d["index"] == index:
            r = int(round(d["default_samplerate"]))
            return r if r in SUPPORTED_RATES else 48_000
    return 48_000


def _check_one(sd: Any, kind: str, index: int, channels: int, rate: int) -> str | None:
    fn = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        fn(device=index, channels=channels, dtype="float32", samplerate=rate)
    except Exception as e:  # PortAudioError or ValueError, depending on the failure
        return str(e)
    return None


def check_settings(*, input: int | None = None, output: int | None = None, monitor: int | None = None,
                   rate: int, input_channels: int = 1, output_channels: int = 1) -> None:
    """Check device / channel / rate combinations before any stream opens.

    Parameters
    ----------
    input, output, monitor
        Device indices (``None``: that direction is not used).
    rate
        Device sample rate in Hz (must be one of ``SUPPORTED_RATES``).
    input_channels, output_channels
        Channels opened on the input and on the output (and monitor) devices.

    Raises
    ------
    DeviceError
        A combination the device refuses; the message says what would work (the device's
        default rate, the supported rates it accepts, its channel count).
    """
    if rate not in SUPPORTED_RATES:
        raise DeviceError(f"device rate {rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
    sd = load_sounddevice()
    devs = {d["index"]: d for d in list_devices()}
    for kind, index, ch in (("input", input, input_channels), ("output", output, output_channels),
                            ("output", monitor, output_channels)):
        if index is None:
            continue
        if index not in devs:
            raise DeviceError(f"{kind} device index {index} does not exist; run `rtvc devices`")
        d = devs[index]
        err = _check_one(sd, kind, index, ch, rate)
        if err is None:
            continue
        max_ch = d[_KIND_KEY[kind]]
        if ch > max_ch:
            raise DeviceError(f"{kind} device {describe(d)} cannot open {ch} channels; it has {max_ch}")
        ok = [r for r in SUPPORTED_RATES if _check_one(sd, kind, index, ch, r) is None]
        raise DeviceError(f"{kind} device {describe(d)} refuses {rate} Hz with {ch} channel(s) ({err}); "
                          f"its default rate is {d['default_samplerate']:g} Hz and it accepts "
                          f"{ok or 'none'} of the supported rates {SUPPORTED_RATES}")



@dataclass(frozen=True)
class DeviceSet:
    """The devices a runner opens: ``input``, ``output``, ``monitor`` (PortAudio indices, or pulse
    sink / source names; None: a file, null or no monitor stands in) and the input ``channel``
    (None: a mixdown)."""

    backend: str
    input: Any = None
    output: Any = None
    monitor: Any = None
    channel: int | None = None
    pulse_rows: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    spec: dict[str, Any] = field(default_factory=dict, compare=False)  # what was asked for
    files: tuple[bool, bool] = (False, False)  # an input file, an output file (or null) stand in

    @classmethod
    def resolve(cls, spec: dict[str, Any], *, backend: str, channel: int | None, input_file: bool,
                output_file: bool) -> "DeviceSet":
        """Resolve ``spec`` (``{"input", "output", "monitor"}``: device specs) for the sides no
        file replaces (``input_file``: an input file; ``output_file``: an output file or null)."""
        wanted = {"input": not input_file, "output": not output_file, "monitor": spec["monitor"] is not None}
        keep = dict(spec=dict(spec), files=(input_file, output_file))
        if backend == "pulse":
            from .pulse import list_pulse_devices, resolve_pulse_device

            listing = list_pulse_devices() if any(wanted.values()) else None
            found = {k: resolve_pulse_device(spec[k], k, listing)["name"] for k, on in wanted.items() if on}
            rows = tuple(pulse_device_table(listing)) if listing is not None else ()
            return cls(backend, found.get("input"), found.get("output"), found.get("monitor"), channel, rows, **keep)
        dev = {k: resolve_device(spec[k], "input" if k == "input" else "output") if on else None
               for k, on in wanted.items()}
        return cls(backend, dev["input"], dev["output"], dev["monitor"], channel, **keep)

    def changed(self, *, input: Any = None, output: Any = None, monitor: Any = None) -> "DeviceSet":
        """The devices with the given specs changed (``monitor=False``: no monitor), resolved again."""
        spec = dict(self.spec)
        for k, v in (("input", input), ("output", output), ("monitor", monitor)):
            if v is not None:
                spec[k] = v
        if monitor is False:
            spec["monitor"] = None
        return DeviceSet.resolve(spec, backend=self.backend, channel=self.channel, input_file=self.files[0],
                                 output_file=self.files[1])

    def as_dict(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "monitor": self.monitor}

    @property
    def any_device(self) -> bool:
        return self.input is not None or self.output is not None or self.monitor is not None

    def input_channels(self) -> int:
        """Channels the input stream opens: the selected channel's and at least two where there
        are two; a channel the device lacks is a DeviceError."""
        if self.input is None:
            return 1
        if self.backend == "pulse":  # ``input`` is the source's name
            d = next(r for r in self.pulse_rows if r["kind"] == "source" and r["name"] == self.input)
        else:
            d = {d["index"]: d for d in list_devices()}[self.input]
        if self.channel is not None:
            if self.channel >= d["max_input_channels"]:
                raise DeviceError(f"input channel {self.channel} does not exist on {describe(d)}; "
                                  f"expected 0..{d['max_input_channels'] - 1}")
            # open at least two channels where there are two: a server asked for one channel of a
            # stereo source mixes both down, and channel 0 would then carry channel 1 too
            return max(self.channel + 1, min(2, d["max_input_channels"]))
        return min(2, d["max_input_channels"])

    def check(self, rate: int) -> None:
        """Check the combination at ``rate`` before any stream opens (DeviceError saying what works)."""
        if self.backend == "pulse" or not self.any_device:
            if rate not in SUPPORTED_RATES:
                raise DeviceError(f"rate {rate} Hz is not supported; expected one of {SUPPORTED_RATES}")
            if self.input is not None:
                self.input_channels()  # a channel the source lacks: refused here
            return  # the PulseAudio server converts any rate and channel count
        check_settings(input=self.input, output=self.output, monitor=self.monitor, rate=rate,
                       input_channels=self.input_channels(), output_channels=1)

    def names(self, *, input_file: Any = None, output_file: Any = None) -> dict[str, str | None]:
        """Device names; where a file stands in ``file:PATH`` (an output without a file: ``null``)."""
        def name(i: Any) -> str | None:
            if i is None or self.backend == "pulse":
                return i
            return device_name(i)

        inp = name(self.input) if self.input is not None else f"file:{input_file}"
        if self.output is not None:
            out = name(self.output)
        else:
            out = f"file:{output_file}" if output_file is not None else "null"
        return {"input": inp, "output": out, "monitor": name(self.monitor)}

    def text(self, names: dict[str, Any]) -> str:
        """``input -> output (+ monitor m)`` for status and fault lines."""
        return (f"{names.get('input')} -> {names.get('output')}"
                + (f" (+ monitor {names['monitor']})" if names.get("monitor") else ""))
