"""Bodies and answers of /api/users: the account, its profile and the app's settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, computed_field, field_validator

from ...fields import CountryCode, CurrencyCode, Email, Money, MoneyOut, TimeZoneName
from ...models import BudgetMethod, Region, User
from ...profiles import profile_completion
from ...validation import SafeStr, Schema

Percent = Annotated[Money, Field(le=100)]
CLEARABLE = frozenset({"country", "region", "timezone"})
# The settings screen reads these from the top level of GET /users/me, not from `data`.
TOP_LEVEL_SETTINGS = ("auto_sync", "offline_mode", "date_format", "budget_alert_threshold")


class UserOut(BaseModel):
    """The caller's account, profile and settings, with the types the app parses."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: str
    is_active: bool
    income: MoneyOut = Field(description="Monthly income")
    savings_goal: MoneyOut = Field(description="Monthly savings goal")
    currency: str
    country: str | None
    region: str | None
    timezone: str | None
    budget_method: str
    has_onboarded: bool
    email_verified: bool
    notifications_enabled: bool
    dark_mode_enabled: bool
    biometric_auth: bool
    auto_sync: bool
    offline_mode: bool
    language: str
    date_format: str
    budget_alert_threshold: MoneyOut
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verified_email(self) -> bool:
        return self.email_verified

    @computed_field  # type: ignore[prop-decorator]
    @property
    def member_since(self) -> str:
        return self.created_at.date().isoformat()

    profile_completion: int = Field(0, ge=0, le=100, description="Percent of the profile filled")

    @classmethod
    def of(cls, user: User) -> UserOut:
        completion = profile_completion(user)
        return cls.model_validate(user).model_copy(update={"profile_completion": completion})


class ProfileUpdate(Schema):
    """Every body the app sends: its profile screens' and its settings screen's. Absent keys
    are left alone; only `country`, `region` and `timezone` can be cleared with `null`."""

    model_config = ConfigDict(populate_by_name=True)

    name: Annotated[SafeStr, Field(max_length=100)] | None = None
    email: Email | None = None
    income: Money | None = Field(None, description="Monthly income")
    savings_goal: Money | None = Field(None, description="Monthly savings goal")
    currency: CurrencyCode | None = None
    country: CountryCode | None = None
    region: Region | None = None
    timezone: TimeZoneName | None = None
    budget_method: BudgetMethod | None = None
    notifications_enabled: bool | None = Field(None, validation_alias="notifications")
    dark_mode_enabled: bool | None = Field(None, validation_alias="dark_mode")
    biometric_auth: bool | None = None
    auto_sync: bool | None = None
    offline_mode: bool | None = None
    language: Annotated[SafeStr, Field(min_length=1, max_length=32)] | None = None
    date_format: Annotated[SafeStr, Field(min_length=1, max_length=16)] | None = None
    budget_alert_threshold: Percent | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _only_some_can_be_cleared(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in CLEARABLE:
            raise ValueError("must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}
