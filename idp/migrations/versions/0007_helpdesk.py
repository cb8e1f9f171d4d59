"""helpdesk console: staff roles, second factors, assisted recovery, API tokens, merged accounts, name search

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _account_fk():
    return sa.ForeignKeyConstraint(['account_id'], ['account.id'], ondelete='CASCADE')


def upgrade():
    op.create_table(
        'staff_role',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('granted_at', sa.DateTime(), nullable=False),
        sa.Column('granted_by', sa.String(length=254), nullable=False),
        _account_fk(), sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'role', name='uq_staff_role_account_role'),
    )
    op.create_index('ix_staff_role_account_id', 'staff_role', ['account_id'])
    op.create_table(
        'totp_secret',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('secret', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('confirmed_at', sa.DateTime(), nullable=True),
        sa.Column('last_step', sa.Integer(), nullable=True),
        _account_fk(), sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('account_id'),
    )
    op.create_table(
        'recovery_code',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        _account_fk(), sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_recovery_code_account_id', 'recovery_code', ['account_id'])
    op.create_table(
        'webauthn_credential',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.String(length=1024), nullable=False),
        sa.Column('public_key', sa.Text(), nullable=False),
        sa.Column('sign_count', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('transports', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        _account_fk(), sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('credential_id'),
    )
    op.create_index('ix_webauthn_credential_account_id', 'webauthn_credential', ['account_id'])
    op.create_table(
        'assisted_recovery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('issued_by', sa.String(length=254), nullable=False),
        sa.Column('issued_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.Column('ended_at', sa.DateTime(), nullable=True),
        sa.Column('wrong_attempts', sa.Integer(), nullable=False, server_default='0'),
        _account_fk(), sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('code_hash'),
    )
    op.create_index('ix_assisted_recovery_account_id', 'assisted_recovery', ['account_id'])
    op.create_table(
        'api_token',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=True),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        _account_fk(), sa.PrimaryKeyConstraint('id'), sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_api_token_account_id', 'api_token', ['account_id'])
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('imported_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('merged_into_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('name_key', sa.String(length=201), nullable=False, server_default=''))
        batch_op.create_foreign_key('fk_account_merged_into', 'account', ['merged_into_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_account_name_key', ['name_key'])
    with op.batch_alter_table('identifier', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=False, server_default='sis'))
    _backfill_name_keys()


def _backfill_name_keys():
    from idp.models.account import fold_name

    conn = op.get_bind()
    account = sa.table('account', sa.column('id', sa.Integer), sa.column('first_name', sa.String),
                       sa.column('last_name', sa.String), sa.column('name_key', sa.String))
    for row in conn.execute(sa.select(account.c.id, account.c.first_name, account.c.last_name)).fetchall():
        conn.execute(account.update().where(account.c.id == row.id)
                     .values(name_key=fold_name(f"{row.first_name} {row.last_name}")[:201]))


def downgrade():
    with op.batch_alter_table('identifier', schema=None) as batch_op:
        batch_op.drop_column('source')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index('ix_account_name_key')
        batch_op.drop_constraint('fk_account_merged_into', type_='foreignkey')
        batch_op.drop_column('name_key')
        batch_op.drop_column('merged_into_id')
        batch_op.drop_column('imported_at')
    for table in ('api_token', 'assisted_recovery', 'webauthn_credential', 'recovery_code', 'totp_secret',
                  'staff_role'):
        op.drop_table(table)
