"""users signed in by an external auth server: provider and subject, no password

Revision ID: 75d3aeed30be
Revises: e7b7783f285c
Create Date: 2026-11-27 10:34:59.367262

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '75d3aeed30be'
down_revision = 'e7b7783f285c'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_provider', sa.String(length=32), server_default='local', nullable=False))
        batch_op.add_column(sa.Column('external_subject', sa.String(length=255), nullable=True))
        batch_op.alter_column('password_hash',
               existing_type=sa.VARCHAR(length=255),
               nullable=True)
        batch_op.create_unique_constraint(batch_op.f('uq_users_auth_provider'), ['auth_provider', 'external_subject'])
        batch_op.create_check_constraint(
            op.f('ck_users_password_if_local'), "(auth_provider = 'local') = (password_hash IS NOT NULL)"
        )



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_password_if_local'), type_='check')
        batch_op.drop_constraint(batch_op.f('uq_users_auth_provider'), type_='unique')
        batch_op.alter_column('password_hash',
               existing_type=sa.VARCHAR(length=255),
               nullable=False)
        batch_op.drop_column('external_subject')
        batch_op.drop_column('auth_provider')

