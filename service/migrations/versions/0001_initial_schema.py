"""initial schema

Revision ID: 0001
Revises: (none)
Times are stored as naive UTC (service.models.UTCDateTime); hashes are per-poll HMACs.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('owners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_owners')),
    sa.UniqueConstraint('name', name=op.f('uq_owners_name'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_api_keys_owner_id_owners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_owner_id'), ['owner_id'], unique=False)

    op.create_table('polls',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('question', sa.String(length=500), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('max_choices', sa.Integer(), nullable=False),
    sa.Column('allow_other', sa.Boolean(), nullable=False),
    sa.Column('allow_comment', sa.Boolean(), nullable=False),
    sa.Column('duplicate_check', sa.String(length=16), nullable=False),
    sa.Column('vote_window_seconds', sa.Integer(), nullable=True),
    sa.Column('results', sa.String(length=16), nullable=False),
    sa.Column('results_min_votes', sa.Integer(), nullable=False),
    sa.Column('opens_at', sa.DateTime(), nullable=True),
    sa.Column('closes_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('allowed_origins', sa.JSON(), nullable=False),
    sa.Column('locale', sa.String(length=35), nullable=False),
    sa.Column('signing_secret', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_polls_owner_id_owners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_polls'))
    )
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.create_index('ix_polls_owner_created', ['owner_id', 'created_at'], unique=False)

    op.create_table('ballots',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('poll_id', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('other', sa.String(length=200), nullable=True),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('context', sa.String(length=500), nullable=True),
    sa.Column('cookie_hash', sa.String(length=32), nullable=True),
    sa.Column('ip_hash', sa.String(length=32), nullable=True),
    sa.Column('user_hash', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_ballots_poll_id_polls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ballots'))
    )
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.create_index('ix_ballots_poll_context', ['poll_id', 'context'], unique=False)
        batch_op.create_index('ix_ballots_poll_cookie', ['poll_id', 'cookie_hash'], unique=False)
        batch_op.create_index('ix_ballots_poll_created', ['poll_id', 'created_at'], unique=False)
        batch_op.create_index('ix_ballots_poll_ip', ['poll_id', 'ip_hash'], unique=False)

    op.create_table('options',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('poll_id', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_options_poll_id_polls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_options'))
    )
    with op.batch_alter_table('options', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_options_poll_id'), ['poll_id'], unique=False)

    op.create_table('ballot_choices',
    sa.Column('ballot_id', sa.String(length=24), nullable=False),
    sa.Column('option_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['ballot_id'], ['ballots.id'], name=op.f('fk_ballot_choices_ballot_id_ballots'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['option_id'], ['options.id'], name=op.f('fk_ballot_choices_option_id_options'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ballot_id', 'option_id', name=op.f('pk_ballot_choices'))
    )
    with op.batch_alter_table('ballot_choices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ballot_choices_option_id'), ['option_id'], unique=False)

    op.create_table('vote_claims',
    sa.Column('poll_id', sa.String(length=16), nullable=False),
    sa.Column('identity', sa.String(length=40), nullable=False),
    sa.Column('ballot_id', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['ballot_id'], ['ballots.id'], name=op.f('fk_vote_claims_ballot_id_ballots'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['poll_id'], ['polls.id'], name=op.f('fk_vote_claims_poll_id_polls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('poll_id', 'identity', name=op.f('pk_vote_claims'))
    )
    with op.batch_alter_table('vote_claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vote_claims_ballot_id'), ['ballot_id'], unique=False)



def downgrade():
    with op.batch_alter_table('vote_claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vote_claims_ballot_id'))

    op.drop_table('vote_claims')
    with op.batch_alter_table('ballot_choices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ballot_choices_option_id'))

    op.drop_table('ballot_choices')
    with op.batch_alter_table('options', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_options_poll_id'))

    op.drop_table('options')
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.drop_index('ix_ballots_poll_ip')
        batch_op.drop_index('ix_ballots_poll_created')
        batch_op.drop_index('ix_ballots_poll_cookie')
        batch_op.drop_index('ix_ballots_poll_context')

    op.drop_table('ballots')
    with op.batch_alter_table('polls', schema=None) as batch_op:
        batch_op.drop_index('ix_polls_owner_created')

    op.drop_table('polls')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_owner_id'))

    op.drop_table('api_keys')
    op.drop_table('owners')
