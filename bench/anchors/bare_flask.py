"""Bare Flask: one route answering a constant. The floor: what a request costs gunicorn, Werkzeug
and Flask before any app code runs."""

from flask import Flask

app = Flask(__name__)


@app.get("/ping")
def ping() -> dict[str, bool]:
    return {"ok": True}
