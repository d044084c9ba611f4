"""Messages to people (approval, password reset): kept in the outbox table, sent by SMTP when configured.

Without a mail server (the embedded default) a message is only stored and logged, so that an operator
can pass a reset link on by hand. With `smtp_host` set, messages are sent after the transaction that
created them commits (a rolled-back action sends nothing); a failed send is recorded on the message.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.db import Clock, OutboxRow, utcnow

__all__ = ["Message", "Outbox", "SmtpSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "datenraum@localhost"
    starttls: bool = False
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class Message:
    id: int
    recipient: str
    subject: str
    body: str
    sent: bool
    error: str | None


class Outbox:
    def __init__(
        self, sessions: sessionmaker[Session], smtp: SmtpSettings | None = None, clock: Clock = utcnow
    ):
        self._sessions = sessions
        self._smtp = smtp
        self._clock = clock

    def queue(self, session: Session, recipient: str, subject: str, body: str) -> None:
        """Store a message in the caller's transaction; it is sent when that transaction commits."""
        row = OutboxRow(created=self._clock(), recipient=recipient, subject=subject, body=body)
        session.add(row)
        log.info("outbox: message %r to %s:\n%s", subject, recipient, body)
        if self._smtp is not None:
            session.flush()
            message_id = row.id
            sa.event.listen(session, "after_commit", lambda _session: self._send(message_id), once=True)

    def messages(self, recipient: str | None = None, limit: int = 100) -> list[Message]:
        statement = sa.select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
        if recipient is not None:
            statement = statement.where(OutboxRow.recipient == recipient)
        with self._sessions() as session:
            return [
                Message(row.id, row.recipient, row.subject, row.body, row.sent is not None, row.error)
                for row in session.scalars(statement)
            ]

    def _send(self, message_id: int) -> None:
        assert self._smtp is not None
        settings = self._smtp
        with self._sessions.begin() as session:
            row = session.get(OutboxRow, message_id)
            if row is None or row.sent is not None:
                return
            email = EmailMessage()
            email["From"] = settings.sender
            email["To"] = row.recipient
            email["Subject"] = row.subject
            email.set_content(row.body)
            try:
                with smtplib.SMTP(settings.host, settings.port, timeout=10) as smtp:
                    if settings.starttls:
                        smtp.starttls()
                    if settings.username:
                        smtp.login(settings.username, settings.password)
                    smtp.send_message(email)
            except (OSError, smtplib.SMTPException) as error:
                row.error = str(error)[:1000]
                log.warning("outbox: sending message %d to %s failed: %s", row.id, row.recipient, error)
            else:
                row.sent = self._clock()
                row.error = None
