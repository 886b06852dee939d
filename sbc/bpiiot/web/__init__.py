"""The device manager: a web interface to configure the SBC and watch the machine.

:func:`create_app` builds the ASGI app around the service (anything with the members of
:class:`~bpiiot.web.service_api.Service`); :func:`bpiiot.web.server.serve` runs it on
uvicorn, on 127.0.0.1 by default. The JSON API is described in ``API.md`` beside this file.
Names are imported lazily, so ``bpiiot web passwd`` does not load the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bpiiot.web.app import create_app
    from bpiiot.web.auth import Auth, PasswordError
    from bpiiot.web.service_api import EditConflict, RuleValidationError, Service

__all__ = ["Auth", "EditConflict", "PasswordError", "RuleValidationError", "Service", "create_app"]

_WHERE = {
    "create_app": "bpiiot.web.app",
    "Auth": "bpiiot.web.auth",
    "PasswordError": "bpiiot.web.auth",
    "EditConflict": "bpiiot.web.service_api",
    "RuleValidationError": "bpiiot.web.service_api",
    "Service": "bpiiot.web.service_api",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _WHERE:
        raise AttributeError(f"module 'bpiiot.web' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
