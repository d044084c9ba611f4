"""Messages to people (approval, password reset): kept in the outbox table, sent by SMTP when configured.

A message may carry a secret (the token of a reset link): it goes out in the mail only. The outbox table
keeps the message with the secret masked, the log names only recipient and subject, and the outbox page
masks whatever looks like a link's token or a secret (also in messages stored before this was so). So
neither a reader of the log nor an administrator can take over an account with a reset link.

Messages go out after the transaction that created them commits (a rolled-back action sends nothing):
by SMTP with `smtp_host` set (a failed send is recorded on the message), or else, for development and
the demo, written in full to `mail_folder` (one .eml file each, readable by the owner only). With
neither, a message is only stored, and a secret in it is lost: the person asks again once mail works.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.db import Clock, OutboxRow, utcnow

__all__ = ["Message", "Outbox", "SmtpSettings", "mask_secrets"]

log = logging.getLogger(__name__)

HIDDEN = "[hidden]"
# A link's token parameter, and anything with the prefix of one of the hub's secrets (see `secrets`).
_SECRETS = re.compile(r"(?<=token=)[^\s&#]+|\bdr[psuw]_[A-Za-z0-9_-]{6,}")


def mask_secrets(text: str) -> str:
    """`text` with every link token and every secret of the hub replaced by [hidden]."""
    return _SECRETS.sub(HIDDEN, text)


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
        self,
        sessions: sessionmaker[Session],
        smtp: SmtpSettings | None = None,
        clock: Clock = utcnow,
        folder: Path | None = None,
    ):
        self._sessions = sessions
        self._smtp = smtp
        self._clock = clock
        self._folder = folder

    def queue(
        self, session: Session, recipient: str, subject: str, body: str, *, secret: str | None = None
    ) -> None:
        """Store a message in the caller's transaction; it is sent when that transaction commits.

        `secret` (a reset token) is in the mail only: the stored message has it masked."""
        stored = body if secret is None else body.replace(secret, HIDDEN)
        row = OutboxRow(created=self._clock(), recipient=recipient, subject=subject, body=stored)
        session.add(row)
        log.info("outbox: message %r to %s", subject, recipient)
        if self._smtp is not None or self._folder is not None:
            session.flush()
            message_id = row.id
            sa.event.listen(session, "after_commit", lambda _session: self._send(message_id, body), once=True)

    def messages(self, recipient: str | None = None, limit: int = 100) -> list[Message]:
        """The newest messages, as the coordination office may read them: with their secrets masked."""
        statement = sa.select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
        if recipient is not None:
            statement = statement.where(OutboxRow.recipient == recipient)
        with self._sessions() as session:
            return [
                Message(
                    row.id,
                    row.recipient,
                    row.subject,
                    mask_secrets(row.body),
                    row.sent is not None,
                    row.error,
                )
                for row in session.scalars(statement)
            ]

    def _send(self, message_id: int, body: str) -> None:
        with self._sessions.begin() as session:
            row = session.get(OutboxRow, message_id)
            if row is None or row.sent is not None:
                return
            email = EmailMessage()
            email["From"] = self._smtp.sender if self._smtp is not None else "datenraum@localhost"
            email["To"] = row.recipient
            email["Subject"] = row.subject
            email.set_content(body)
            if self._smtp is None:
                self._write(message_id, email)
                row.sent = self._clock()
                return
            settings = self._smtp
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

    def _write(self, message_id: int, email: EmailMessage) -> None:
        """The message as a file of the mail folder, readable by the owner only (it may hold a secret)."""
        assert self._folder is not None
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._folder / f"{message_id:08d}.eml"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(email.as_bytes())
