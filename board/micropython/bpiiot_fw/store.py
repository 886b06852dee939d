"""Persistent configuration: one JSON file on the board's filesystem.

Holds the board id, MAC key, acquisition settings, sensor configuration, outputs
and the boot counter. Every write goes to a temporary file that is then renamed
over the old one, so a power cut leaves either the old or the new file, never half
of one. Reading and checking the file happens once, at boot (``startup.load``: a
missing or corrupt file falls back to the defaults, and the app says why in a log
frame), so that code is not resident here.
"""

import json
import os

PATH = "bpiiot.json"

DEFAULTS = {
    "board_id": "bpiiot-mp",
    "key": None,  # hex of 16-32 bytes, or None
    "sample_rate_hz": 3200,  # per axis; the DSP supports 1600, 3200 and 6400 (DSP.md)
    "window_ms": 1000,
    "hop_ms": 1000,
    "channels": 15,
    "machine_class": 2,
    "sensor": {"accel": "signal", "signal": {"kind": "bearing", "seed": 1}},
    "outputs": [0, 1, 2, 3],
    "alarm_pin": None,  # an output driven high while the zone is D
    "wdt_ms": 0,  # 0: no watchdog (a started WDT cannot be stopped for flashing)
    "uart": None,  # {"id": 0, "baudrate": 115200, ...} to use a UART, None: console
    "boot": 0,
}


def key_bytes(cfg):
    """The MAC key of cfg as bytes, or None."""
    k = cfg.get("key")
    return bytes.fromhex(k) if k else None


class Store:
    """The configuration file at path; ``cfg`` is the current, validated dict."""

    def __init__(self, path=PATH):
        self.path = path
        self.cfg = dict(DEFAULTS)
        #: cfg holds changes not yet written (see update and flush).
        self.dirty = False

    def save(self):
        """Write cfg atomically (temporary file, then rename)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            # Streamed: the file's text is never one string on the heap, which by
            # now may have no free piece that large.
            json.dump(self.cfg, f)
        try:
            os.rename(tmp, self.path)
        except OSError:
            # Some filesystems refuse to rename over an existing file.
            os.remove(self.path)
            os.rename(tmp, self.path)

    def update(self, **changes):
        """Apply changes to cfg now; they reach the file at the next ``flush``.

        Writing flash can stall for tens of milliseconds: the app flushes from its main
        loop right after draining the sample ring, and coalesces changes made between.
        """
        for k, v in changes.items():
            self.cfg[k] = v
        self.dirty = True

    def flush(self):
        """Write cfg if it changed since the last write (OSError if that fails)."""
        if self.dirty:
            self.dirty = False
            self.save()
