"""gunicorn settings, read from the environment (Railway sets PORT)."""

import os
import secrets
import sys

bind = f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT") else "127.0.0.1:8000"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"

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
