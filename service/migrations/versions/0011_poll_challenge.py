"""a poll may ask every vote, or only while it is attacked, for a proof of work

Revision ID: 0011
Revises: 0009

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('polls', schema=None) as batch_op:
        # Constant defaults: SQLite adds the columns in place, without copying the table.
        batch_op.add_column(sa.Column('challenge', sa.String(length=4), nullable=False,
                                      server_default='none'))
        batch_op.add_column(sa.Column('challenge_until', sa.DateTime(), nullable=True))
    # Solutions spent while Redis could not be reached: still used only once.
    op.create_table(
        'spent_challenges',
        sa.Column('token', sa.String(length=64), nullable=False),
        sa.Column('poll_id', sa.String(length=16), nullable=False),
        sa.Column('spender', sa.String(length=32), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token'),
    )
    op.create_index('ix_spent_challenges_expires_at', 'spent_challenges', ['expires_at'])


def downgrade():
    op.drop_index('ix_spent_challenges_expires_at', table_name='spent_challenges')
    op.drop_table('spent_challenges')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_column('challenge_until')
        batch_op.drop_column('challenge')
