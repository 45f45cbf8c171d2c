"""a poll may close itself at exactly max_votes ballots

Revision ID: 0012
Revises: 0011

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('polls', schema=None) as batch_op:
        # Nullable, no default: SQLite adds the columns in place, without copying the table.
        batch_op.add_column(sa.Column('max_votes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('closed_reason', sa.String(length=10), nullable=True))


def downgrade():
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_column('closed_reason')
        batch_op.drop_column('max_votes')
