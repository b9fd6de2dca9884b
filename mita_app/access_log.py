"""gunicorn's access log as one JSON object a line, with the request id and the latency.

Every value goes through `json.dumps` (ASCII only), so nothing a client sends can forge a line.
`gunicorn.conf.py` installs it as `logger_class`.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gunicorn import glogging

if TYPE_CHECKING:
    from gunicorn.http import Request
    from gunicorn.http.wsgi import Response


class JsonAccessLogger(glogging.Logger):
    def access(
        self,
        resp: Response,
        req: Request,
        environ: MutableMapping[str, Any],
        request_time: timedelta,
    ) -> None:
        if not self.access_log_enabled:
            return
        status: int | str | None = resp.status
        if isinstance(status, str):
            status = int(status.split(None, 1)[0])
        headers = {name.lower(): value for name, value in resp.headers}
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "pid": os.getpid(),
            "request_id": headers.get("x-request-id"),
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            "status": status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        try:
            self.access_log.info(json.dumps(entry, ensure_ascii=True))
        except Exception:  # gunicorn's own access() reports its failures the same way
            self.error(traceback.format_exc())
