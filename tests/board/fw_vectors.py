# Runs under the MicroPython Unix port (not pytest): every conformance vector
# through the firmware codec. Usage: micropython fw_vectors.py VECTOR.json ...
# Prints one line per vector, "PASS name" or "FAIL name: why", then "DONE n".
import json
import sys

from bpiiot_fw import codec

# Field order of each message's payload (SPEC.md 5), to build payloads from the
# vectors' named fields.
FIELDS = {
    "hello": (
        "board_id",
        "firmware_version",
        "protocol_version",
        "capabilities",
        "boot_counter",
        "last_host_seq",
    ),
    "report": (
        "window_seq",
        "board_time_ms",
        "samples",
        "acc_rms_mg",
        "acc_peak_mg",
        "vel_rms_um_s",
        "temperature_cdeg_c",
    ),
    "status": (
        "frames_sent",
        "frames_rejected",
        "overruns",
        "free_memory_bytes",
        "cpu_load_permille",
        "uptime_ms",
        "windows",
    ),
    "ack": ("ref_seq",),
    "nack": ("ref_seq", "code", "detail"),
    "log": ("level", "text"),
    "set_output": ("pin", "value"),
    "set_key": ("key",),
}
CONFIG = ("sample_rate_hz", "window_ms", "hop_ms", "channels", "machine_class")
TYPES = {
    "hello": 1,
    "report": 2,
    "status": 3,
    "ack": 4,
    "nack": 5,
    "log": 6,
    "config": 7,
    "ping": 0x40,
    "get_status": 0x41,
    "set_config": 0x42,
    "set_output": 0x43,
    "set_key": 0x44,
    "clear_key": 0x45,
    "reboot": 0x46,
    "hello_request": 0x47,
    "get_config": 0x48,
}


def unhex(h):
    return None if h is None else bytes.fromhex(h)


def to_payload(msg):
    kind = msg["kind"]
    if kind in ("config", "set_config"):
        return {i + 1: msg[f] for i, f in enumerate(CONFIG) if msg.get(f) is not None}
    fields = FIELDS.get(kind)
    if fields is None:
        return []
    out = []
    for f in fields:
        v = msg[f]
        if kind == "report" and type(v) is list:
            out.extend(v)
        elif kind == "set_key":
            out.append(unhex(v))
        else:
            out.append(v)
    if kind == "report" and msg.get("flags"):
        out.append(msg["flags"])  # present only when non-zero
    return out


def run(v):
    key = unhex(v["key"])
    board = v["receiver"] == "board"
    ver = codec.Verifier(board, key)
    prior = v["prior"]
    if prior is not None:
        ver.session = prior["session"]
        ver.seq = prior["seq"]
    try:
        typ, session, seq, auth, obj = ver.verify(unhex(v["wire"]))
        verdict = "ok"
    except codec.FrameError as exc:
        verdict = exc.reason
    if verdict != v["verdict"]:
        return "verdict {}, expected {}".format(verdict, v["verdict"])
    if verdict != "ok":
        # Frames the same receiver verifies next: a refusal leaves nothing behind.
        for nxt in v.get("then", ()):
            try:
                ver.verify(unhex(nxt["wire"]))
                got = "ok"
            except codec.FrameError as exc:
                got = exc.reason
            if got != nxt["verdict"]:
                return "next frame {}, expected {}".format(got, nxt["verdict"])
        return None
    h = v["header"]
    if (typ, session, seq, auth) != (h["type"], h["session"], h["seq"], h["authenticated"]):
        return f"header {(typ, session, seq, auth)!r}"
    msg = v["message"]
    if TYPES[msg["kind"]] != typ:
        return "kind {} for type {}".format(msg["kind"], typ)
    want = to_payload(msg)
    if obj != want:
        return f"message {obj!r} != {want!r}"
    payload = codec.cbor_encode(want)
    if payload.hex() != v["payload_hex"]:
        return f"payload {payload.hex()}"
    tagged = codec.cobs_decode(unhex(v["wire"]))[0] & codec.FLAG_AUTH
    # A tagged frame received without a key cannot be re-made: its tag is unknown.
    if auth or not tagged:
        enc = codec.Encoder(from_host=board, key=key, session=session)
        wire = enc.frame(typ, payload, seq)
        if bytes(wire[:-1]).hex() != v["wire"]:
            return f"wire {bytes(wire[:-1]).hex()}"
    # The verifier must have advanced its replay state past the accepted frame.
    last = prior["seq"] if prior else 0
    if ver.seq != (max(last, seq) if board else seq) or (not board and ver.session != session):
        return "replay state not advanced"
    return None


count = 0
for path in sys.argv[1:]:
    with open(path) as f:
        doc = json.load(f)
    for v in doc["vectors"]:
        count += 1
        try:
            why = run(v)
        except Exception as exc:  # a crash is a failure of this vector, not of the run
            why = f"crash {type(exc).__name__}: {exc}"
        if why is None:
            print("PASS", v["name"])
        else:
            print("FAIL", v["name"] + ":", why)
print("DONE", count)
