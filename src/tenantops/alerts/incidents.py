"""Which alerts open an ITIL incident, and how its resolution closes it.

An alert opens an incident when its ``tenantops_incident`` label asks for one
(``true``, or a priority ``1``–``4``), or when its ``severity`` label is one
of ``AlertsSettings.incident_severities`` (``critical`` by default) and no
playbook takes it on — a playbook owns its response and opens its own record.
``false`` in the label opens none whatever the severity. The incident is linked
to the alert's tenant (or the platform, for an alert that names none); a
priority 1 or 2 incident pages on-call through the ITIL records' own hook.

One incident per firing: the correlation id is the alert's fingerprint and
start, so Alertmanager re-sending a group changes nothing, and the alert firing
again after it resolved opens a new incident. Its resolution moves the incident
to ``resolved`` (straight from ``new`` when nobody took it up: it stays
unacknowledged, and its page is resolved, not acknowledged), with the
resolution said on its timeline; an incident someone already resolved, closed
or cancelled is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from tenantops.alerts.models import Alert
from tenantops.auth.principal import Principal, Role
from tenantops.itil import service as itil
from tenantops.itil import states
from tenantops.itil.states import Kind

INCIDENT_LABEL = "tenantops_incident"
# Who opens and resolves alert incidents: an operator's rights, Alertmanager's name.
RECEIVER = Principal("system:alertmanager", frozenset({Role.OPS_ENGINEER}), via="system")
SEVERITY_PRIORITY = {"critical": 1, "page": 1, "high": 2, "error": 2, "warning": 3}
YES = ("true", "yes", "1", "2", "3", "4")


def priority_for(
    labels: Mapping[str, str], *, severities: Sequence[str], has_playbook: bool
) -> int | None:
    """The priority of the incident this alert opens; None: it opens none."""
    asked = str(labels.get(INCIDENT_LABEL, "")).strip().lower()
    severity = str(labels.get("severity", "")).strip().lower()
    by_severity = SEVERITY_PRIORITY.get(severity, 4)
    if asked in ("1", "2", "3", "4"):
        return int(asked)
    if asked in YES:
        return by_severity
    if asked in ("false", "no", "0") or has_playbook:
        return None
    return by_severity if severity and severity in {s.lower() for s in severities} else None


def correlation_id(alert: Alert) -> str:
    return f"alert:{alert.fingerprint}:{alert.starts_at.isoformat()}"


def open_for(session: Session, alert: Alert, *, priority: int) -> str:
    """Open (or find again) the incident of this firing; its number."""
    summary = str(alert.annotations.get("summary") or "").strip()
    name = alert.alertname.strip() or "unnamed alert"
    lines = [
        f"Alertmanager: {alert.alertname} is firing since {alert.starts_at.isoformat()}.",
        str(alert.annotations.get("description") or "").strip(),
        f"Source: {alert.generator_url}" if alert.generator_url else "",
    ]
    opened = itil.open_record(
        session,
        kind=Kind.INCIDENT,
        title=f"{name}: {summary}" if summary else name,
        description="\n".join(line for line in lines if line),
        priority=priority,
        actor=RECEIVER,
        tenant=alert.tenant_id,
        source="alert",
        correlation_id=correlation_id(alert),
        fields={
            "alertname": alert.alertname,
            "fingerprint": alert.fingerprint,
            "severity": str(alert.labels.get("severity") or ""),
        },
    )
    return opened.record.number


def resolve_for(session: Session, alert: Alert) -> str | None:
    """Resolve the incident this alert's firing opened; what happened (None: it had none)."""
    found = itil.find_by_correlation(session, correlation_id(alert))
    if found is None or found.kind != Kind.INCIDENT or found.source != "alert":
        return None  # nothing this receiver opened (a key someone else took is theirs)
    if found.state in states.DONE:
        return f"incident {found.number} already {found.state}"
    walk = states.path(Kind.INCIDENT, found.state, states.RESOLVED) or []
    ended = (alert.ends_at or alert.received_at).isoformat()
    for to in walk:
        itil.transition(
            session,
            actor=RECEIVER,
            ref=found.id,
            to=to,
            resolution=(
                f"Alertmanager: {alert.alertname} resolved at {ended}"
                if to == states.RESOLVED
                else None
            ),
        )
    return f"incident {found.number} resolved"
