"""The CDDL states the temperature range the prose and the SDK enforce: -27315..100000."""

from __future__ import annotations

import cbor2
import pycddl
import pytest

from bpiiot import messages

from .test_cddl import schema

HEAD = [7, 1000, 3200, 1, 2, 3, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize(
    ("temperature", "ok"),
    [(None, True), (-27315, True), (-27316, False), (-1, True), (0, True),
     (100000, True), (100001, False), (-(2**40), False), (2**40, False)],
)  # fmt: skip
def test_cddl_and_sdk_agree_on_the_temperature_range(temperature: int | None, ok: bool) -> None:
    payload = [*HEAD, temperature]
    if ok:
        schema("report").validate_cbor(cbor2.dumps(payload))
        assert messages.Report.from_payload(payload).temperature_cdeg_c == temperature
    else:
        with pytest.raises(pycddl.ValidationError):
            schema("report").validate_cbor(cbor2.dumps(payload))
        with pytest.raises(messages.SchemaError):
            messages.Report.from_payload(payload)
