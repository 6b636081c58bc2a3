"""Live control: JSON-RPC 2.0 websocket + HTTP server, OBS overlay, presets and hotkeys.

Layers (each importable on its own): :mod:`.protocol` (pure JSON-RPC core, no I/O),
:mod:`.actions` (the :class:`~.actions.Controller` every entry point calls), :mod:`.server`
(the only module that imports ``websockets``), :mod:`.presets`, :mod:`.hotkeys`, :mod:`.auth`,
:mod:`.commands` (CLI subcommands and ``run`` options).
"""
