"""rating and NPS polls: a poll's scale, an option's numeric value

Revision ID: 0014
Revises: 0011

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable without defaults: SQLite adds the columns in place, without copying tables.
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scale', sa.JSON(), nullable=True))
    with op.batch_alter_table('options', schema=None) as batch_op:
        batch_op.add_column(sa.Column('value', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('options', schema=None) as batch_op:
        batch_op.drop_column('value')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_column('scale')
