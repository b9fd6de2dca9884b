"""gunicorn settings of the anchor apps: the worker count, worker class, threads, recycling,
keep-alive and preloading that mita's gunicorn.conf.py picks from the same environment (read
from it, so WEB_CONCURRENCY, GUNICORN_WORKER_CLASS and the like set both alike). No access log:
the anchors stand for the framework's cost, and mita's access log is part of mita's."""

import runpy
from pathlib import Path

_mita = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))

workers = _mita["workers"]
worker_class = _mita["worker_class"]
threads = _mita["threads"]
max_requests = _mita["max_requests"]
max_requests_jitter = _mita["max_requests_jitter"]
keepalive = _mita["keepalive"]
timeout = _mita["timeout"]
graceful_timeout = _mita["graceful_timeout"]
preload_app = _mita["preload_app"]
control_socket_disable = _mita["control_socket_disable"]
accesslog = None
errorlog = "-"


def post_worker_init(worker):
    """mita's worker class reads its deadlines on reading a request from the app's config: give
    each anchor mita's (REQUEST_HEADER_TIMEOUT, REQUEST_BODY_TIMEOUT)."""
    from mita_app.config import from_env

    config = from_env(default_database_url="sqlite://")
    for name in ("REQUEST_HEADER_TIMEOUT", "REQUEST_BODY_TIMEOUT"):
        worker.wsgi.config.setdefault(name, config[name])
