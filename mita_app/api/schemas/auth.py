"""Bodies and answers of /api/auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool

from ...fields import CENT, CountryCode, Email, LoginEmail, Money, Password, TimeZoneName
from ...validation import SafeStr, Schema
from .users import UserOut


class RegisterIn(Schema):
    email: Email
    password: Password
    country: CountryCode | None = None
    timezone: TimeZoneName | None = None
    income: Money | None = Field(None, description="Monthly income")
    annual_income: Money | None = Field(
        None, description="Yearly income (what the app sends), kept as a twelfth a month"
    )

    def monthly_income(self) -> Decimal:
        if self.income is not None:
            return self.income
        if self.annual_income is not None:
            return (self.annual_income / 12).quantize(CENT, rounding=ROUND_HALF_UP)
        return Decimal(0)


class LoginIn(Schema):
    email: LoginEmail
    password: Annotated[SafeStr, Field(min_length=1, max_length=1024)]


class RefreshIn(Schema):
    refresh_token: Annotated[SafeStr, Field(min_length=1, max_length=512)]


class LogoutIn(Schema):
    # The app sends the refresh token it has, which is "" when it never got one.
    refresh_token: Annotated[SafeStr, Field(max_length=1024)] | None = None


class GoogleIn(Schema):
    id_token: Annotated[SafeStr, Field(min_length=1, max_length=4096)]


class PasswordChangeIn(Schema):
    current_password: Annotated[SafeStr, Field(min_length=1, max_length=1024)]
    new_password: Password


def _must_be_true(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true to delete the account")
    return value


class DeleteAccountIn(Schema):
    confirmation: Annotated[
        StrictBool,
        AfterValidator(_must_be_true),
        Field(description="The JSON literal true", json_schema_extra={"const": True}),
    ]


class LoggedOutOut(BaseModel):
    logged_out: bool = True


class PasswordChangedOut(BaseModel):
    password_changed: bool = True


class AccountDeletedOut(BaseModel):
    deleted: bool = True


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    user: UserOut


class SessionOut(BaseModel):
    user_id: uuid.UUID
    role: str
    session_id: str | None  # none for the JWTs of an external auth server
    expires_at: datetime
