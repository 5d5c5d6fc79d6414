"""On-call and ITIL records: incidents, changes and problems linked to tenants; pages.

``itil_records`` and ``itil_notes`` hold the records (the control plane's own on
the embedded default, mirrors of the ITSM tool's tickets otherwise) and their
timelines; ``oncall_configs`` every applied version of the on-call document,
``oncall_pages`` and ``oncall_page_events`` the pages and who was told when.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "itil_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("tenant_name", sa.String(length=63), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("correlation_id", sa.String(length=200), nullable=True),
        sa.Column("external_system", sa.String(length=32), nullable=True),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("external_link", sa.String(length=500), nullable=True),
        sa.Column("problem_id", sa.String(length=36), nullable=True),
        sa.Column("assigned_to", sa.String(length=200), nullable=True),
        sa.Column("opened_by", sa.String(length=200), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["problem_id"],
            ["itil_records.id"],
            name=op.f("fk_itil_records_problem_id_itil_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_records")),
        sa.UniqueConstraint("correlation_id", name=op.f("uq_itil_records_correlation_id")),
        sa.UniqueConstraint("kind", "seq", name=op.f("uq_itil_records_kind")),
        sa.UniqueConstraint("number", name=op.f("uq_itil_records_number")),
    )

    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_itil_records_opened_at"), ["opened_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_itil_records_problem_id"), ["problem_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_itil_records_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_itil_records_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_itil_records_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "oncall_configs",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("applied_by", sa.String(length=200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_oncall_configs")),
    )

    op.create_table(
        "oncall_pages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("record_id", sa.String(length=36), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("policy", sa.String(length=100), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oncall_pages")),
        sa.UniqueConstraint("key", name=op.f("uq_oncall_pages_key")),
    )

    with op.batch_alter_table("oncall_pages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oncall_pages_next_at"), ["next_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_oncall_pages_record_id"), ["record_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_oncall_pages_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_oncall_pages_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "itil_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"], ["itil_records.id"], name=op.f("fk_itil_notes_record_id_itil_records")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_notes")),
        sa.UniqueConstraint("key", name=op.f("uq_itil_notes_key")),
    )

    with op.batch_alter_table("itil_notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_itil_notes_record_id"), ["record_id"], unique=False)

    op.create_table(
        "oncall_page_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("page_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=24), nullable=False),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["page_id"],
            ["oncall_pages.id"],
            name=op.f("fk_oncall_page_events_page_id_oncall_pages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oncall_page_events")),
    )

    with op.batch_alter_table("oncall_page_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oncall_page_events_page_id"), ["page_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("oncall_page_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oncall_page_events_page_id"))

    op.drop_table("oncall_page_events")

    with op.batch_alter_table("itil_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_itil_notes_record_id"))

    op.drop_table("itil_notes")

    with op.batch_alter_table("oncall_pages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oncall_pages_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_oncall_pages_status"))
        batch_op.drop_index(batch_op.f("ix_oncall_pages_record_id"))
        batch_op.drop_index(batch_op.f("ix_oncall_pages_next_at"))

    op.drop_table("oncall_pages")

    op.drop_table("oncall_configs")

    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_itil_records_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_itil_records_state"))
        batch_op.drop_index(batch_op.f("ix_itil_records_run_id"))
        batch_op.drop_index(batch_op.f("ix_itil_records_problem_id"))
        batch_op.drop_index(batch_op.f("ix_itil_records_opened_at"))

    op.drop_table("itil_records")
