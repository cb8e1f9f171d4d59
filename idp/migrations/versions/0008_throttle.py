"""brute-force protection: throttle counters (when Redis is not configured), growing and permanent locks

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'throttle_counter',
        sa.Column('key', sa.String(length=80), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('since', sa.DateTime(), nullable=False),
        sa.Column('last_at', sa.DateTime(), nullable=False),
        sa.Column('until', sa.DateTime(), nullable=True),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_throttle_counter_expires_at', 'throttle_counter', ['expires_at'])
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lockouts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_permanently', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('last_failed_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('last_failed_at')
        batch_op.drop_column('locked_permanently')
        batch_op.drop_column('lockouts')
    op.drop_index('ix_throttle_counter_expires_at', table_name='throttle_counter')
    op.drop_table('throttle_counter')
