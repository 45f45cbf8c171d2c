"""API keys with a name, a scope and a last-use time

Revision ID: 0007
Revises: 0006
Every key made before scopes existed is its owner's all-powerful key: `admin`.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=100), nullable=False,
                                      server_default='default'))
        batch_op.add_column(sa.Column('scope', sa.String(length=10), nullable=False,
                                      server_default='admin'))
        batch_op.add_column(sa.Column('last_used_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('name', server_default=None)
        batch_op.alter_column('scope', server_default=None)


def downgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('scope')
        batch_op.drop_column('name')
