"""SMTP transport of the outbox (``smtplib``; STARTTLS and login when configured).

A 4xx reply or a connection problem is retriable; a 5xx reply is permanent.
Each message carries its outbox id as ``Message-ID``, so a message delivered
twice after a crash (at-least-once) can be recognised by the receiver.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from tenantops.config import SMTPSettings
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.notify.port import Envelope


def _kind(code: int) -> Retry:
    return Retry.RETRIABLE if 400 <= code < 500 else Retry.PERMANENT


class SmtpTransport:
    """Delivers envelopes to one SMTP server."""

    def __init__(self, settings: SMTPSettings) -> None:
        if settings.host is None:
            raise ValueError("SMTP transport needs settings.smtp.host")
        self.settings = settings
        self.host: str = settings.host

    def _message(self, envelope: Envelope) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = envelope.sender
        msg["To"] = ", ".join(envelope.to)
        msg["Subject"] = envelope.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = f"<{envelope.message_id}@tenantops>"
        msg.set_content(envelope.body)
        return msg

    def deliver(self, envelope: Envelope) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(self.host, s.port, timeout=s.timeout_seconds) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.username:
                    password = s.password.get_secret_value() if s.password else ""
                    smtp.login(s.username, password)
                refused = smtp.send_message(
                    self._message(envelope), from_addr=envelope.sender, to_addrs=list(envelope.to)
                )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind = Retry.RETRIABLE if all(400 <= c < 500 for c in codes) else Retry.PERMANENT
            raise DriverError(
                f"SMTP refused every recipient: {exc.recipients}", retry=kind
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DriverError(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", retry=_kind(exc.smtp_code)
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DriverError(
                f"SMTP server {self.host}:{s.port} unusable: {exc}", retry=Retry.RETRIABLE
            ) from exc
        if refused:
            # Some recipients took it; sending again would duplicate it for them.
            raise DriverError(f"SMTP refused some recipients: {refused}", retry=Retry.NEEDS_HUMAN)
