"""emails in their normal form: width-folded, lower case, NFC, as they are now looked up

Sign-in looks an address up in its normal form (mita_app/fields.py, normalize_email), so an
address stored in another form (a decomposed "é", fullwidth letters) would no longer be found.
Each such row is rewritten to its normal form, unless another account already has that form:
then two spellings were two accounts, and the row is left for an operator (printed, with both
ids). Addresses the new rules refuse outright (invisible or mixed-script characters) are left as
they are and printed: they cannot sign in until an operator changes them. Nothing is undone on
downgrade: the normal form is a valid address under the old rules too.

Revision ID: a41c7e2d9b60
Revises: 5e882b3f3a11
Create Date: 2026-11-29 03:20:00.000000

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a41c7e2d9b60'
down_revision = '5e882b3f3a11'
branch_labels = None
depends_on = None

USERS = sa.table("users", sa.column("id"), sa.column("email"))


def _normal(email):
    """normalize_email as it is at this revision (a migration keeps its own copy)."""
    def narrow(char):
        decomposition = unicodedata.decomposition(char)
        if char.isascii() or not decomposition.startswith(("<wide>", "<narrow>")):
            return char
        return unicodedata.normalize("NFKC", char)

    return unicodedata.normalize("NFC", "".join(map(narrow, email.strip())).lower())


def _invisible(email):
    return any(unicodedata.category(char)[0] in "CZ" for char in email if not char.isascii())


def upgrade():
    bind = op.get_bind()
    rows = bind.execute(sa.select(USERS.c.id, USERS.c.email)).all()
    owner = {email: user_id for user_id, email in rows}
    for user_id, email in rows:
        normal = _normal(email)
        if _invisible(normal):
            print(f"users {user_id}: {email!r} holds an invisible character; left for an operator")
        if normal == email:
            continue
        if normal in owner:
            print(
                f"users {user_id}: {email!r} is {normal!r}, the address of users "
                f"{owner[normal]}; left for an operator"
            )
            continue
        bind.execute(sa.update(USERS).where(USERS.c.id == user_id).values(email=normal))
        owner[normal] = user_id


def downgrade():
    pass
