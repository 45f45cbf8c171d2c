"""ballot receipts and idempotency keys

Revision ID: 0002
Revises: 0001
Both columns hold hashes only: the SHA-256 of the voter's receipt (a secret only the
voter has) and the per-poll keyed hash of the vote's Idempotency-Key.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('receipt_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('idempotency_hash', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_ballots_receipt_hash', ['receipt_hash'], unique=True)
        batch_op.create_index(
            'ix_ballots_poll_idempotency', ['poll_id', 'idempotency_hash'], unique=True
        )


def downgrade():
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.drop_index('ix_ballots_poll_idempotency')
        batch_op.drop_index('ix_ballots_receipt_hash')
        batch_op.drop_column('idempotency_hash')
        batch_op.drop_column('receipt_hash')
