"""a ballot's choices keep the voter's order (rank), and a ranked ballot its ranking

Revision ID: 0015
Revises: 0011

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

# Choices written before ranks existed keep the order they had: the options' order.
_RANK_EXISTING = """
UPDATE ballot_choices SET rank = 1 + (
  SELECT count(*) FROM ballot_choices AS earlier
  JOIN options AS earlier_option ON earlier_option.id = earlier.option_id
  WHERE earlier.ballot_id = ballot_choices.ballot_id
    AND earlier_option.position < (SELECT position FROM options
                                   WHERE options.id = ballot_choices.option_id))
WHERE ballot_id IN (SELECT ballot_id FROM ballot_choices
                    GROUP BY ballot_id HAVING count(*) > 1)
"""


def upgrade():
    with op.batch_alter_table('ballot_choices', schema=None) as batch_op:
        # A constant default: SQLite adds the column in place, without copying the table.
        batch_op.add_column(sa.Column('rank', sa.Integer(), nullable=False,
                                      server_default='1'))
    op.execute(_RANK_EXISTING)
    # Ranked polls start with this revision: no existing ballot has a ranking.
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ranking', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('ballots', schema=None) as batch_op:
        batch_op.drop_column('ranking')
    with op.batch_alter_table('ballot_choices', schema=None) as batch_op:
        batch_op.drop_column('rank')
