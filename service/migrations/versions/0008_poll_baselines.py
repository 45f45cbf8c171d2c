"""poll baselines: the votes a poll had before it moved to Pollbox

Revision ID: 0008
Revises: 0007
Stored apart from the ballots (no ballot is invented); the tallies add them when read.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'poll_baselines',
        sa.Column('poll_id', sa.String(length=16), nullable=False),
        sa.Column('total_votes', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('as_of', sa.DateTime(), nullable=False),
        sa.Column('set_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['poll_id'], ['polls.id'],
                                name=op.f('fk_poll_baselines_poll_id_polls'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('poll_id', name=op.f('pk_poll_baselines')),
    )
    op.create_table(
        'poll_baseline_options',
        sa.Column('poll_id', sa.String(length=16), nullable=False),
        sa.Column('option_id', sa.Integer(), nullable=False),
        sa.Column('votes', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['poll_id'], ['poll_baselines.poll_id'],
                                name=op.f('fk_poll_baseline_options_poll_id_poll_baselines'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['option_id'], ['options.id'],
                                name=op.f('fk_poll_baseline_options_option_id_options'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('poll_id', 'option_id', name=op.f('pk_poll_baseline_options')),
    )
    op.create_index(op.f('ix_poll_baseline_options_option_id'), 'poll_baseline_options',
                    ['option_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_poll_baseline_options_option_id'),
                  table_name='poll_baseline_options')
    op.drop_table('poll_baseline_options')
    op.drop_table('poll_baselines')
