"""The Sparkplug codec without a broker: topics, seq, bdSeq, types, odd event fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tahutils.tahu import sparkplug_b_pb2 as pb

from bpiiot.bridge import MessageQueue
from bpiiot.bridge import sparkplug as spb
from bpiiot.bridge.queue import QueuedMessage


def metrics(body: bytes) -> dict[str, Any]:
    payload = pb.Payload.FromString(body)
    out = {}
    for mt in payload.metrics:
        which = mt.WhichOneof("value")
        out[mt.name] = (mt.datatype, getattr(mt, which) if which else None)
    return out


def row(qseq: int, kind: str, data: dict[str, Any], board: str | None = "mill") -> QueuedMessage:
    return QueuedMessage(qseq, 100.0, board, kind, data, 0, False)


def test_births_then_data_in_seq_order_with_typed_metrics(tmp_path: Path) -> None:
    q = MessageQueue(tmp_path / "q.sqlite")
    codec = spb.SparkplugCodec("g", "sbc1", q)
    topic, _ = codec.will() or ("", b"")
    assert topic == "spBv1.0/g/NDEATH/sbc1" and codec.bd_seq == 0
    (nbirth_topic, nbirth), *dbirths = codec.births()
    assert nbirth_topic == "spBv1.0/g/NBIRTH/sbc1" and dbirths == []
    assert pb.Payload.FromString(nbirth).seq == 0
    assert metrics(nbirth)["bdSeq"] == (spb.UINT64, 0)
    event = row(1, "event.tx", {"key": "k1", "state": "confirmed", "block": "0x12", "gas": 3})
    pre = codec.prelude(event)
    assert [t for t, _ in pre] == ["spBv1.0/g/DBIRTH/sbc1/mill"]
    assert pb.Payload.FromString(pre[0][1]).seq == 1
    topic, body = codec.encode(event, historical=True)
    assert topic == "spBv1.0/g/DDATA/sbc1/mill" and pb.Payload.FromString(body).seq == 2
    got = metrics(body)
    assert got["Event/tx/state"] == (spb.STRING, "confirmed")
    assert got["qseq"] == (spb.UINT64, 1)
    # A field of the wrong type, and one nobody declared, travel as JSON text.
    assert json.loads(got["Event/other"][1]) == {"kind": "tx", "block": "0x12", "gas": 3}
    assert all(mt.is_historical for mt in pb.Payload.FromString(body).metrics)
    topic, body = codec.encode(row(2, "event.log", {"level": "info", "text": "hi"}, None), False)
    assert topic == "spBv1.0/g/NDATA/sbc1" and pb.Payload.FromString(body).seq == 3
    gone = row(3, "event.board", {"state": "disconnected"})
    assert codec.prelude(gone) == []
    assert codec.encode(gone, False)[0] == "spBv1.0/g/DDEATH/sbc1/mill"
    q.close()


def test_seq_wraps_at_256_and_bdseq_persists(tmp_path: Path) -> None:
    q = MessageQueue(tmp_path / "q.sqlite")
    codec = spb.SparkplugCodec("g", "n", q)
    codec.will()
    codec.births()
    seqs = [
        pb.Payload.FromString(codec.encode(row(i, "event.log", {}, None), False)[1]).seq
        for i in range(300)
    ]
    assert seqs[:2] == [1, 2] and seqs[254:257] == [255, 0, 1]
    codec.will()
    assert codec.bd_seq == 1
    q.close()
    again = spb.SparkplugCodec("g", "n", MessageQueue(tmp_path / "q.sqlite"))
    again.will()
    assert again.bd_seq == 2  # survives a restart of the bridge
