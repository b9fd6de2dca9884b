"""Outgoing email. `send(to, subject, body)` is the only call the rest of the code makes.

Sending never happens inside a request, nor inside its transaction: a request's messages are
kept until its response has been sent (and dropped if it failed: a message may name a row the
failed request never committed), then handed to this process's sender thread, which delivers
them one by one and retries a failed delivery with backoff. A failure is logged without the
message's body (a reset link is a credential). The thread belongs to the process that started
it (`mita_app/background.py`): after a fork the child starts its own on first use; `stop`
(gunicorn: `worker_exit`, or `atexit` elsewhere) delivers what is queued within a budget.
"""

from __future__ import annotations

import functools
import logging
import queue
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import cast

from flask import Flask, Response, current_app, g, has_request_context

from .background import ProcessQueueWorker

log = logging.getLogger(__name__)
EXTENSION_KEY = "mita.mail"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message waiting to be sent. It becomes an email in the sender thread: a request only
    queues it, so an answer costs the same whether it sends mail or not."""

    to: str
    subject: str
    body: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def __str__(self) -> str:
        # How a message is named in the log: its id and subject, never its body.
        return f"{self.id} {self.subject!r}"


def mailer_of(app: Flask) -> Mailer:
    return cast(Mailer, app.extensions[EXTENSION_KEY])


def send(to: str, subject: str, body: str) -> None:
    """Send a plain-text email, after the current response if there is one."""
    mailer_of(current_app).send(to, subject, body)


class Mailer(ProcessQueueWorker[Outgoing]):
    """Queue, sender thread and counters of one process's outgoing mail (`app.extensions`)."""

    thread_name = "mail-sender"

    def __init__(self, app: Flask) -> None:
        config = app.config
        self.backend: str = config["MAIL_BACKEND"]
        self.server: str = config["MAIL_SERVER"]
        self.port: int = config["MAIL_PORT"]
        self.username: str = config["MAIL_USERNAME"]
        self.password: str = config["MAIL_PASSWORD"]
        self.use_tls: bool = config["MAIL_USE_TLS"]
        self.use_ssl: bool = config["MAIL_USE_SSL"]
        self.sender: str = config["MAIL_FROM"]
        self.timeout: float = config["MAIL_TIMEOUT"]
        self.retries: int = config["MAIL_RETRIES"]
        self.backoff: float = config["MAIL_RETRY_BACKOFF"]
        super().__init__(
            queue_size=config["MAIL_QUEUE_SIZE"],
            shutdown_timeout=config["MAIL_SHUTDOWN_TIMEOUT"],
        )

    def _reset(self) -> None:
        super()._reset()
        self.sent = self.failed = self.dropped = 0

    # --- the side requests and commands see ------------------------------------------------------

    def send(self, to: str, subject: str, body: str) -> None:
        """Queue a message: in a request, once its response is sent; elsewhere, now."""
        message = Outgoing(to, subject, body)
        if has_request_context():
            g.setdefault("mail_outbox", []).append(message)
        else:
            self.submit([message])

    def submit(self, messages: list[Outgoing]) -> None:
        """Hand messages to the sender thread; never blocks. What does not fit is dropped,
        and logged."""
        self.start()
        with self._lock:
            for message in messages:
                if self._stopped:
                    self.dropped += 1
                    log.error("mail %s not sent: the mailer has stopped", message)
                    continue
                try:
                    self._queue.put_nowait(message)
                except queue.Full:
                    self.dropped += 1
                    log.error("mail %s not sent: the outbox is full", message)
                    continue
                self._pending += 1

    def _left_over(self, budget: float, *, finished: bool) -> None:
        with self._lock:
            left = self._pending
        if left:  # the thread is stuck on a server; it goes down with the process
            log.error("%d mail message(s) not delivered before shutdown", left)

    # --- the sender thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                # Once stopping, an empty queue means done; until then, wait for mail.
                message = self._queue.get(block=not self._stopping.is_set())
            except queue.Empty:
                return
            if message is None:  # a wake-up from `stop`
                continue
            if time.monotonic() >= self._give_up_at:
                log.error("mail %s not sent: the shutdown budget is spent", message)
                self._settle(message, delivered=False)
                continue
            try:
                delivered = self._deliver_with_retries(message)
            except Exception:  # the thread must outlive any bug
                log.exception("mail %s: unexpected failure", message)
                delivered = False
            self._settle(message, delivered=delivered)

    def _deliver_with_retries(self, message: Outgoing) -> bool:
        for attempt in range(1, self.retries + 2):
            try:
                self._deliver(message)
                return True
            except (smtplib.SMTPException, OSError) as error:
                # The error's type and SMTP code only: its text may quote the message.
                log.warning(
                    "mail %s: attempt %d of %d failed: %s %s",
                    message,
                    attempt,
                    self.retries + 1,
                    type(error).__name__,
                    getattr(error, "smtp_code", ""),
                )
            if attempt > self.retries or not self._pause(self.backoff * 2 ** (attempt - 1)):
                break
        log.error("mail %s: giving up", message)
        return False

    def _pause(self, seconds: float) -> bool:
        """Wait before another attempt; False if the shutdown budget runs out first."""
        until = time.monotonic() + seconds
        while until < self._give_up_at:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return True
            if self._interrupt.wait(remaining):  # `stop` was called: the budget is known now
                self._interrupt.clear()
        return False

    def _compose(self, message: Outgoing) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"
        email["Message-ID"] = make_msgid(idstring=message.id, domain=domain)
        email.set_content(message.body)
        return email

    def _deliver(self, message: Outgoing) -> None:
        if self.backend == "console":
            # Development only (production refuses this backend): the link is the point.
            log.info("mail %s to %s:\n%s", message, message.to, message.body)
            return
        email = self._compose(message)
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.server, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.server, self.port, timeout=self.timeout)
        with smtp:
            if self.use_tls:
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(email)

    def _settle(self, message: Outgoing, *, delivered: bool) -> None:
        with self._settling(1):
            if delivered:
                self.sent += 1
            else:
                self.failed += 1


def _hand_over_after_the_response(response: Response) -> Response:
    messages: list[Outgoing] | None = g.pop("mail_outbox", None)
    if messages:
        if response.status_code < 400:
            response.call_on_close(functools.partial(mailer_of(current_app).submit, messages))
        else:
            log.warning("%d mail message(s) dropped: the request failed", len(messages))
    return response


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = Mailer(app)
    app.after_request(_hand_over_after_the_response)
