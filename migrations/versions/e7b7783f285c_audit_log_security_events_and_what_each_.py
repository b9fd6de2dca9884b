"""audit log: security events, and what each audit writer last reported

Revision ID: e7b7783f285c
Revises: 072080937e9c
Create Date: 2026-11-27 09:35:47.425393

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'e7b7783f285c'
down_revision = '072080937e9c'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('session_id', sa.Uuid(), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=256), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=True),
    sa.Column('path', sa.String(length=512), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_created_at', ['created_at'], unique=False, postgresql_using='brin')
        batch_op.create_index('ix_audit_events_event_type_created_at', ['event_type', 'created_at'], unique=False)
        batch_op.create_index('ix_audit_events_user_id_created_at', ['user_id', 'created_at'], unique=False)

    op.create_table('audit_writers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('queue_depth', sa.Integer(), nullable=False),
    sa.Column('written', sa.BigInteger(), nullable=False),
    sa.Column('batches', sa.BigInteger(), nullable=False),
    sa.Column('write_failures', sa.BigInteger(), nullable=False),
    sa.Column('spilled', sa.BigInteger(), nullable=False),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_writers'))
    )
    with op.batch_alter_table('audit_writers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_writers_updated_at'), ['updated_at'], unique=False)



def downgrade():
    with op.batch_alter_table('audit_writers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_writers_updated_at'))

    op.drop_table('audit_writers')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_user_id_created_at')
        batch_op.drop_index('ix_audit_events_event_type_created_at')
        batch_op.drop_index('ix_audit_events_created_at')

    op.drop_table('audit_events')
