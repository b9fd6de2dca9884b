"""profile and settings of the app, monthly income, password reset tokens, linked Google identities, habits, crash reports

`users.annual_income` becomes the app's monthly `income`: a twelfth of it, rounded half up to
the cent (none is 0). Downgrading turns it back into twelve months' worth.

Revision ID: 7e0b6e3a887e
Revises: 75d3aeed30be
Create Date: 2026-11-28 22:57:36.122577

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '7e0b6e3a887e'
down_revision = '75d3aeed30be'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('crash_reports',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('dedup_key', sa.String(length=64), nullable=False),
    sa.Column('client_report_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reported_at', sa.String(length=40), nullable=True),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('stack_trace', sa.Text(), nullable=True),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('app_version', sa.String(length=64), nullable=True),
    sa.Column('platform', sa.String(length=32), nullable=True),
    sa.Column('device_info', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('is_connected', sa.Boolean(), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name=op.f('ck_crash_reports_severity_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_crash_reports_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crash_reports')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_crash_reports_dedup_key'))
    )
    with op.batch_alter_table('crash_reports', schema=None) as batch_op:
        batch_op.create_index('ix_crash_reports_received_at', ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_crash_reports_user_id'), ['user_id'], unique=False)

    op.create_table('habits',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=2000), server_default='', nullable=False),
    sa.Column('target_frequency', sa.String(length=16), server_default='daily', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("target_frequency IN ('daily', 'weekly', 'monthly')", name=op.f('ck_habits_target_frequency_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_habits_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_habits'))
    )
    with op.batch_alter_table('habits', schema=None) as batch_op:
        batch_op.create_index('ix_habits_user_id_created_at', ['user_id', 'created_at'], unique=False)

    op.create_table('linked_identities',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_linked_identities_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_linked_identities')),
    sa.UniqueConstraint('provider', 'subject', name=op.f('uq_linked_identities_provider'))
    )
    with op.batch_alter_table('linked_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_linked_identities_user_id'), ['user_id'], unique=False)

    op.create_table('password_reset_tokens',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_reset_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_reset_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_reset_tokens_token_hash'))
    )
    with op.batch_alter_table('password_reset_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_password_reset_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('habit_completions',
    sa.Column('habit_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['habit_id'], ['habits.id'], name=op.f('fk_habit_completions_habit_id_habits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('habit_id', 'day', name=op.f('pk_habit_completions'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('region', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False))
        batch_op.add_column(sa.Column('income', sa.Numeric(precision=14, scale=2), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('savings_goal', sa.Numeric(precision=14, scale=2), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('budget_method', sa.String(length=32), server_default='50/30/20 Rule', nullable=False))
        batch_op.add_column(sa.Column('has_onboarded', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('email_verified', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('notifications_enabled', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('dark_mode_enabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('biometric_auth', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('auto_sync', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('offline_mode', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('language', sa.String(length=32), server_default='English', nullable=False))
        batch_op.add_column(sa.Column('date_format', sa.String(length=16), server_default='MM/dd/yyyy', nullable=False))
        batch_op.add_column(sa.Column('budget_alert_threshold', sa.Numeric(precision=5, scale=2), server_default='80', nullable=False))

    users = sa.table('users', sa.column('annual_income', sa.Numeric(14, 2)), sa.column('income', sa.Numeric(14, 2)))
    op.execute(
        users.update()
        .where(users.c.annual_income.isnot(None))
        .values(income=sa.func.round(users.c.annual_income / 12, 2))
    )

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_annual_income_non_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_users_password_if_local'), type_='check')
        batch_op.drop_column('annual_income')
        batch_op.create_check_constraint(op.f('ck_users_income_non_negative'), 'income >= 0')
        batch_op.create_check_constraint(op.f('ck_users_savings_goal_non_negative'), 'savings_goal >= 0')
        batch_op.create_check_constraint(
            op.f('ck_users_budget_alert_threshold_percent'),
            'budget_alert_threshold >= 0 AND budget_alert_threshold <= 100',
        )
        batch_op.create_check_constraint(
            op.f('ck_users_region_known'),
            "region IS NULL OR region IN ('US', 'Canada', 'UK', 'Europe', 'Australia', 'Asia')",
        )
        batch_op.create_check_constraint(
            op.f('ck_users_budget_method_known'),
            "budget_method IS NULL OR budget_method IN "
            "('50/30/20 Rule', '60/20/20', 'Percentage', 'Zero-Based', 'Envelope')",
        )
        # A local account may now have no password (it signs in with Google).
        batch_op.create_check_constraint(
            op.f('ck_users_password_if_local'), "auth_provider = 'local' OR password_hash IS NULL"
        )


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        for name in ('password_if_local', 'budget_method_known', 'region_known',
                     'budget_alert_threshold_percent', 'savings_goal_non_negative',
                     'income_non_negative'):
            batch_op.drop_constraint(op.f(f'ck_users_{name}'), type_='check')
        batch_op.add_column(sa.Column('annual_income', sa.NUMERIC(precision=14, scale=2), nullable=True))

    users = sa.table('users', sa.column('annual_income', sa.Numeric(14, 2)), sa.column('income', sa.Numeric(14, 2)))
    op.execute(users.update().values(annual_income=users.c.income * 12))
    # Accounts without a password (Google sign-ups) cannot exist before this revision.
    op.execute("DELETE FROM users WHERE auth_provider = 'local' AND password_hash IS NULL")

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_users_annual_income_non_negative'), 'annual_income >= 0')
        batch_op.create_check_constraint(
            op.f('ck_users_password_if_local'), "(auth_provider = 'local') = (password_hash IS NOT NULL)"
        )
        batch_op.drop_column('budget_alert_threshold')
        batch_op.drop_column('date_format')
        batch_op.drop_column('language')
        batch_op.drop_column('offline_mode')
        batch_op.drop_column('auto_sync')
        batch_op.drop_column('biometric_auth')
        batch_op.drop_column('dark_mode_enabled')
        batch_op.drop_column('notifications_enabled')
        batch_op.drop_column('email_verified')
        batch_op.drop_column('has_onboarded')
        batch_op.drop_column('budget_method')
        batch_op.drop_column('savings_goal')
        batch_op.drop_column('income')
        batch_op.drop_column('currency')
        batch_op.drop_column('region')
        batch_op.drop_column('name')

    op.drop_table('habit_completions')
    with op.batch_alter_table('password_reset_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_password_reset_tokens_user_id'))

    op.drop_table('password_reset_tokens')
    with op.batch_alter_table('linked_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_linked_identities_user_id'))

    op.drop_table('linked_identities')
    with op.batch_alter_table('habits', schema=None) as batch_op:
        batch_op.drop_index('ix_habits_user_id_created_at')

    op.drop_table('habits')
    with op.batch_alter_table('crash_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crash_reports_user_id'))
        batch_op.drop_index('ix_crash_reports_received_at')

    op.drop_table('crash_reports')
