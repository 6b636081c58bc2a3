"""``python _espeak_events.py VOICE`` < text: speak the text with libespeak-ng and write, on stdout,
one JSON line ``{"rate": R, "onsets": [[sample, "ipa"], ...]}`` then the audio as raw int16.

Run in a fresh process per utterance (see :func:`rtvc.train.sources._espeak_item`): the library
keeps synthesis state between calls inside one process (the same text spoken twice comes out
different), while a fresh process gives what ``espeak-ng -v VOICE`` gives, every time. Imports
nothing but the standard library, so it starts fast.
"""

import ctypes
import json
import sys


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT of speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


def main() -> int:
    voice, text = sys.argv[1], sys.stdin.read()
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError as e:
        sys.stderr.write(f"libespeak-ng.so.1 cannot be loaded ({e})")
        return 3
    # AUDIO_OUTPUT_SYNCHRONOUS; espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_PHONEME_IPA
    rate = lib.espeak_Initialize(2, 0, None, 0x0001 | 0x0002)
    if rate <= 0:
        sys.stderr.write(f"espeak_Initialize returned {rate}")
        return 3
    audio: list[bytes] = []
    onsets: list[list] = []

    def on_synth(wav, n, events):  # noqa: ANN001, ANN202
        if n > 0:
            audio.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            if events[i].type == 7:  # espeakEVENT_PHONEME: .sample is where the phone starts
                onsets.append([int(events[i].sample), events[i].id.string.decode("utf-8", "replace")])
            i += 1
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                ctypes.POINTER(_Event))(on_synth)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        sys.stderr.write("espeak_SetVoiceByName refused it")
        return 2
    raw = text.encode("utf-8")
    err = lib.espeak_Synth(raw, len(raw) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
    if err != 0 or not audio:
        sys.stderr.write(f"espeak_Synth failed (code {err})")
        return 3
    out = sys.stdout.buffer
    out.write(json.dumps({"rate": rate, "onsets": onsets}).encode() + b"\n")
    out.write(b"".join(audio))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
