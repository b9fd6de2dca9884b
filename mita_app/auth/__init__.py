"""Authentication: tokens, sessions and the `login_required` guard."""

from .guard import current_principal, current_user, login_required

__all__ = ["current_principal", "current_user", "login_required"]
