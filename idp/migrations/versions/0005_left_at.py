"""people who left

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

When an import no longer lists a person (account.left_at), and how many each run marked (import_run.left).
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('left_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('import_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('left', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    with op.batch_alter_table('import_run', schema=None) as batch_op:
        batch_op.drop_column('left')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('left_at')
