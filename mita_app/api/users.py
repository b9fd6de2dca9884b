"""/api/users: the caller's own profile."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict

from ..auth import current_user, login_required
from ..auth.accounts import update_profile
from ..fields import CountryCode, Income, TimeZoneName
from ..validation import Schema, body, ok, returns

bp = Blueprint("users", __name__, url_prefix="/api/users")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: str
    is_active: bool
    country: str | None
    annual_income: Decimal | None
    timezone: str | None
    created_at: datetime
    updated_at: datetime


class ProfileUpdate(Schema):
    """Only these fields can be changed; `null` clears one."""

    country: CountryCode | None = None
    annual_income: Income | None = None
    timezone: TimeZoneName | None = None


@bp.get("/me")
@returns(UserOut)
@login_required
def me() -> Response:
    return ok(UserOut.model_validate(current_user))


@bp.patch("/me")
@returns(UserOut)
@login_required
@body(ProfileUpdate)
def update_me(payload: ProfileUpdate) -> Response:
    changes = {name: getattr(payload, name) for name in payload.model_fields_set}
    return ok(UserOut.model_validate(update_profile(current_user, changes)))
