"""a poll may show its options in an order of each visitor's own

Revision ID: 0009
Revises: 0008

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('polls', schema=None) as batch_op:
        # A constant default: SQLite then adds the column in place, without copying
        # the table.
        batch_op.add_column(sa.Column('shuffle_options', sa.Boolean(), nullable=False,
                                      server_default='0'))


def downgrade():
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_column('shuffle_options')
