"""Live control: JSON-RPC 2.0 websocket + HTTP server, OBS overlay, presets and hotkeys.

Layers (each importable on its own): :mod:`.protocol` (pure JSON-RPC core, no I/O) over
:mod:`.methods` (the typed methods and error codes), :mod:`.actions` (the
:class:`~.actions.Controller` every entry point calls; the runner's devices and the loopback
self-test are :mod:`.devices`'), :mod:`.server` (the only module that imports ``websockets``)
with :mod:`.web` (its HTTP routes), :mod:`.presets`, :mod:`.hotkeys`, :mod:`.auth`,
:mod:`.commands` (CLI subcommands and ``run`` options).
"""
