"""Authentication: tokens, sessions and the `login_required` guard."""

from .guard import caller, current_principal, current_user, login_required

__all__ = ["caller", "current_principal", "current_user", "login_required"]
