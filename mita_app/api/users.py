"""/api/users: the caller's own profile and app settings."""

from __future__ import annotations

from flask import Blueprint, Response

from ..auth import caller, login_required
from ..models import User
from ..profiles import update_profile
from ..validation import body, ok, returns
from .schemas.users import TOP_LEVEL_SETTINGS, ProfileUpdate, UserOut

bp = Blueprint("users", __name__, url_prefix="/api/users")


def _profile(user: User) -> Response:
    data = UserOut.of(user).model_dump(mode="json")
    return ok(data, **{name: data[name] for name in TOP_LEVEL_SETTINGS})


@bp.get("/me")
@returns(UserOut, top_level=TOP_LEVEL_SETTINGS)
@login_required
def me() -> Response:
    return _profile(caller())


@bp.patch("/me")
@returns(UserOut, top_level=TOP_LEVEL_SETTINGS, errors={409: "Email already in use"})
@login_required
@body(ProfileUpdate)
def update_me(payload: ProfileUpdate) -> Response:
    return _profile(update_profile(caller(), payload.changes()))
