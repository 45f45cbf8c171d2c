"""claims that expire: the database backs windowed duplicate checks up too

Revision ID: 0006
Revises: 0005
A windowed poll's ballots now take claim rows as "one vote ever" ones always did, held
until the window ends (`expires_at`; null: for ever). The ballots still inside their
window are given theirs here, so the backstop holds from the first vote after the
upgrade.

"""
from datetime import UTC, datetime, timedelta

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

CHECKED = {
    'cookie': ('cookie',),
    'ip': ('ip',),
    'cookie_and_ip': ('cookie', 'ip'),
    'user': ('user',),
}


def upgrade():
    with op.batch_alter_table('vote_claims', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))

    connection = op.get_bind()
    polls = sa.table('polls', sa.column('id'), sa.column('duplicate_check'),
                     sa.column('vote_window_seconds'))
    ballots = sa.table('ballots', sa.column('id'), sa.column('poll_id'),
                       sa.column('created_at', sa.DateTime()), sa.column('cookie_hash'),
                       sa.column('ip_hash'), sa.column('user_hash'))
    claims = sa.table('vote_claims', sa.column('poll_id'), sa.column('identity'),
                      sa.column('ballot_id'), sa.column('expires_at', sa.DateTime()))
    now = datetime.now(UTC).replace(tzinfo=None)
    windowed = connection.execute(
        sa.select(polls.c.id, polls.c.duplicate_check, polls.c.vote_window_seconds)
        .where(polls.c.vote_window_seconds.is_not(None))).all()
    for poll_id, check, window in windowed:
        kinds = CHECKED.get(check, ())
        if not kinds:
            continue
        held = {}  # identity -> (ballot id, until): the latest ballot of each identity
        rows = connection.execute(
            sa.select(ballots).where(ballots.c.poll_id == poll_id,
                                     ballots.c.created_at > now - timedelta(seconds=window))
            .order_by(ballots.c.created_at))
        for row in rows.mappings():
            for kind in kinds:
                value = row[f'{kind}_hash']
                if value is not None:
                    held[f'{kind}:{value}'] = (
                        row['id'], row['created_at'] + timedelta(seconds=window))
        if held:
            connection.execute(claims.insert(), [
                {'poll_id': poll_id, 'identity': identity, 'ballot_id': ballot_id,
                 'expires_at': until} for identity, (ballot_id, until) in held.items()])


def downgrade():
    op.execute("DELETE FROM vote_claims WHERE expires_at IS NOT NULL")
    with op.batch_alter_table('vote_claims', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
