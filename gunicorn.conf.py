"""gunicorn settings, read from the environment (Railway sets PORT), and the worker hooks that
start and stop each worker's audit writer."""

import gc
import os
import secrets
import sys

bind = f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else "127.0.0.1:8000"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, so a slow client holds one thread and not a whole worker, with deadlines on reading
# each request (REQUEST_HEADER_TIMEOUT, REQUEST_BODY_TIMEOUT): see mita_app/gunicorn_worker.py.
# `sync` keeps one thread (gunicorn would turn it into plain gthread, which has no deadlines).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "mita_app.gunicorn_worker.ThreadWorker")
threads = int(os.environ.get("GUNICORN_THREADS", "1" if worker_class == "sync" else "16"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Header limits, enforced by gunicorn before the app sees a request (its answer is then its own
# plain 400 or 431, not the app's JSON). A header line may hold a 16 KB credential (a bearer
# token, or a session cookie beside others): the app answers such a one itself, with its JSON 401.
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "4094"))
limit_request_fields = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", "20480"))
# Recycle workers now and then (a leak stays bounded); the jitter keeps them from all
# restarting at once. 0 turns it off.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
# Build the app once, in the master: a worker is then a fork, serving within milliseconds. Built
# in each worker instead, a recycled worker's replacement spends a second of CPU importing and
# building the app, and the requests of that moment wait (p99 of /health 0.4-0.9 s, not 10 ms,
# under load: bench/README.md). What the app starts per process (the audit writer, the mail
# thread, pooled connections) starts in each worker, never in the master; see the hooks below.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() in {"1", "true", "yes", "on"}
# Who may tell gunicorn the original scheme (X-Forwarded-Proto): the proxies the app trusts.
# Railway's proxy has no fixed address, so with TRUSTED_PROXY_COUNT set every peer is one.
forwarded_allow_ips = os.environ.get(
    "FORWARDED_ALLOW_IPS",
    "*" if int(os.environ.get("TRUSTED_PROXY_COUNT", "0") or 0) > 0 else "127.0.0.1,::1",
)
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
logger_class = "mita_app.access_log.JsonAccessLogger"
# No runtime control socket: nothing here uses gunicornc, and every master on a host would
# claim the same $HOME/.gunicorn/gunicorn.ctl (and run one more thread).
control_socket_disable = True

# In development without a SECRET_KEY, every worker would draw its own random key and reject
# the others' tokens: draw one here, in the master, for all of them. Production never gets
# here without a key (the app refuses to start).
if not os.environ.get("SECRET_KEY") and os.environ.get("MITA_ENV", "development") != "production":
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
    print(
        "SECRET_KEY is not set: using a random key shared by this server's workers; "
        "tokens will not survive a restart",
        file=sys.stderr,
    )


def when_ready(server):
    """The preloaded app's objects live as long as the process: the garbage collector need not
    look at them again. Frozen before any fork, they cost a worker's full collections nothing
    (65 ms each otherwise, a stall of all its threads) and their pages stay shared."""
    if server.cfg.preload_app:
        gc.freeze()


def post_fork(server, worker):
    """A preloaded app was built in the master: its pooled connections are not the child's."""
    if server.cfg.preload_app:
        from mita_app.extensions import db

        with worker.app.wsgi().app_context():
            db.engine.dispose(close=False)


def post_worker_init(worker):
    """Each worker runs its own audit writer thread; the master never does."""
    from mita_app.audit import writer_of

    writer_of(worker.wsgi).start()


def worker_exit(server, worker):
    """On SIGTERM (or recycling), send the worker's queued mail within a quarter of the graceful
    timeout, then write what its audit queue holds within half of it: in-flight requests have
    had their share of it."""
    app = getattr(worker, "wsgi", None)
    if app is None:  # the worker failed before loading the app
        return
    from mita_app.audit import writer_of
    from mita_app.mail import EXTENSION_KEY as MAIL

    mailer = app.extensions.get(MAIL)
    if mailer is not None:
        mailer.stop(timeout=min(mailer.shutdown_timeout, server.cfg.graceful_timeout / 4))

    writer = writer_of(app)
    writer.stop(timeout=min(writer.shutdown_timeout, server.cfg.graceful_timeout / 2))


def worker_abort(worker):
    """gunicorn's timeout: the master sends SIGABRT to a worker silent for `timeout` seconds and
    SIGKILL on its next round, a second or less later (arbiter.murder_workers); `worker_exit`
    still runs in between, but cannot count on any of that second. So the audit writer waits
    for nothing here: what it has not written is spilled to stderr at once."""
    app = getattr(worker, "wsgi", None)
    if app is None:
        return
    from mita_app.audit import writer_of

    writer_of(app).abandon("worker_abort")
