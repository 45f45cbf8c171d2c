"""a poll may let its voters change their vote; a ballot says when it last changed

Revision ID: 0013
Revises: 0011

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('polls', schema=None) as batch_op:
        # A constant default: SQLite adds the column in place, without copying the table.
        batch_op.add_column(sa.Column('allow_change', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.drop_column('changed_at')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_column('allow_change')
