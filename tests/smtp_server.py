"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives, for the mail tests.

`hold()` makes it accept a message's data only once `release()` is called (bounded by
`hold_timeout`), to show that a request has answered before its mail was delivered.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    """aiosmtpd's handler: the messages received, in order."""

    def __init__(self, hold_timeout: float = 10.0) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._changed = threading.Condition()
        self._open = threading.Event()
        self._open.set()
        self.hold_timeout = hold_timeout
        self.data_started = threading.Event()  # a message's data has reached the server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started.set()
        if not self._open.is_set():
            await asyncio.get_running_loop().run_in_executor(
                None, self._open.wait, self.hold_timeout
            )
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._changed.notify_all()
        return "250 OK"

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """The first `count` messages, waiting at most `timeout` seconds for them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self.messages)} of {count} messages arrived")
                self._changed.wait(remaining)
            return list(self.messages[:count])


class SmtpServer:
    """aiosmtpd's Controller on 127.0.0.1:`port`, started and stopped with the `with` block."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=port)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.inbox.release()
        self._controller.stop()
