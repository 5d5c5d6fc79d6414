"""ITIL records: ``external_version``, the ITSM tool's version stamp of a mirror row's state.

A mirror row takes an answer of the tool only if the answer's stamp
(ServiceNow's ``sys_mod_count``, which counts the record's updates) is not
lower than the one of the state the row holds: answers that arrive out of
order are ordered by the tool itself, not by the clocks of the hosts that
asked (decision 0043). NULL (every row before this revision, every record of
our own, an answer without a stamp): the answer is applied.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.drop_column("external_version")
