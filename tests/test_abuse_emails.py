"""Lookalike and invisible-character emails: one address is one account, however it is spelt.

An address is normalised (width-folded, lower-cased, NFC) wherever one is accepted; one that
holds an invisible, control or formatting character, or mixes scripts within a part, is a 422
naming `email`, on register, login, forgot-password and a profile change alike.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from mita_app.extensions import db
from mita_app.fields import normalize_email
from mita_app.models import User
from tests.conftest import PASSWORD, AuthActions, events_of

# (what it is, the address): each is refused wherever an address is accepted.
INVISIBLE = [
    ("zero-width space", "ad\u200bmin@example.com"),
    ("zero-width non-joiner", "ad\u200cmin@example.com"),
    ("zero-width joiner", "ad\u200dmin@example.com"),
    ("word joiner", "admin\u2060@example.com"),
    ("byte order mark", "\ufeffadmin@example.com"),
    ("soft hyphen", "ad\u00admin@example.com"),
    ("right-to-left override", "admin\u202e@example.com"),
    ("left-to-right embedding", "\u202aadmin@example.com"),
    ("left-to-right isolate", "\u2066admin\u2069@example.com"),
    ("right-to-left isolate", "admin@\u2067example.com"),
    ("first strong isolate", "ad\u2068min@example.com"),
    ("arabic letter mark", "admin\u061c@example.com"),
    ("mongolian vowel separator", "ad\u180emin@example.com"),
    ("combining grapheme joiner", "ad\u034fmin@example.com"),
    ("variation selector", "admin\ufe0f@example.com"),
    ("hangul filler", "admin\u3164@example.com"),
    ("tag character", "admin\U000e0041@example.com"),
    ("next line (C1 control)", "ad\x85min@example.com"),
    ("bell (C0 control)", "ad\x07min@example.com"),
    ("private use", "admin\ue000@example.com"),
    ("line separator", "ad\u2028min@example.com"),
]
MIXED_SCRIPTS = [
    ("cyrillic a among latin", "p\u0430ypal@example.com"),
    ("cyrillic o among latin", "g\u043eogle@example.com"),
    ("greek omicron among latin", "r\u03bfot@example.com"),
    ("latin among armenian", "\u0570\u0561o@example.com"),
    ("cyrillic e in a domain label", "admin@\u0435xample.com"),
]
# (what it is, the address as sent, the address it is): one account each.
SPELLINGS = [
    ("decomposed e acute", "jose\u0301@example.com", "jos\u00e9@example.com"),
    ("decomposed upper case", "JOSE\u0301@EXAMPLE.COM", "jos\u00e9@example.com"),
    ("fullwidth latin", "\uff4a\uff4f\uff53\u00e9@example.com", "jos\u00e9@example.com"),
    ("kelvin sign", "\u212aelvin@example.com", "kelvin@example.com"),
]
# Real addresses in one script (plus ASCII digits and punctuation) stay welcome.
SINGLE_SCRIPT = [
    "\u0438\u0432\u0430\u043d.2024@example.com",
    "\u03b3\u03b9\u03ac\u03bd\u03bd\u03b7\u03c2_1@example.gr",
    "\u5c71\u7530\u3084\u307e\u3060taro@example.jp",
    "\u0645\u062d\u0645\u062f@example.com",
    "fran\u00e7ois.m\u00fcller@example.com",
    "admin@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
]


def register(client: FlaskClient, email: str) -> Any:
    return client.post("/api/auth/register", json={"email": email, "password": PASSWORD})


def users(app: Flask) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(User.email)))


def refusals(client: FlaskClient, auth: AuthActions, token: str, email: str) -> list[str]:
    """What register, login, forgot-password and a profile change say of `email`, for each
    that answers 422 naming `email`; "" for the others."""
    answers = [
        register(client, email),
        auth.login(email),
        client.post("/api/auth/forgot-password", json={"email": email}),
        client.patch(
            "/api/users/me", json={"email": email}, headers={"Authorization": f"Bearer {token}"}
        ),
    ]
    said = []
    for response in answers:
        error = response.get_json().get("error") or {}
        fields = error.get("fields") or {}
        refused = response.status_code == 422 and error.get("code") == "validation_error"
        said.append(fields.get("email", "") if refused else "")
    return said


def test_an_invisible_or_control_character_is_refused_everywhere_an_email_is_taken(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    token = auth.register("admin@example.com")["access_token"]
    wrong = {}
    for what, email in INVISIBLE:
        code = f"U+{ord(next(c for c in email if not (c.isascii() and c.isprintable()))):04X}"
        said = refusals(client, auth, token, email)
        if not all(code in message for message in said):
            wrong[what] = said

    assert wrong == {}
    assert users(app) == ["admin@example.com"]


def test_a_part_mixing_scripts_is_refused_everywhere_an_email_is_taken(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    token = auth.register("someone@example.com")["access_token"]
    wrong = {}
    for what, email in MIXED_SCRIPTS:
        said = refusals(client, auth, token, email)
        if not all("scripts" in message for message in said):
            wrong[what] = said

    assert wrong == {}
    assert users(app) == ["someone@example.com"]


def test_an_address_in_one_script_is_welcome(app: Flask, auth: AuthActions) -> None:
    for email in SINGLE_SCRIPT:
        stored = auth.register(email)["user"]["email"]
        assert stored == unicodedata.normalize("NFC", email.lower())
        assert auth.login(email).status_code == 200, email

    assert len(users(app)) == len(SINGLE_SCRIPT)


def test_two_spellings_of_one_address_are_one_account(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    canonicals = {canonical for _, _, canonical in SPELLINGS}
    ids = {canonical: auth.register(canonical)["user"]["id"] for canonical in canonicals}
    wrong = {}
    for what, sent, canonical in SPELLINGS:
        again = client.post(
            "/api/auth/register", json={"email": sent, "password": "another long password"}
        )
        logged_in = auth.login(sent)
        user = (logged_in.get_json().get("data") or {}).get("user") or {}
        answered = (again.status_code, logged_in.status_code, user.get("id"))
        if answered != (409, 200, ids[canonical]):
            wrong[what] = answered

    assert wrong == {}
    assert users(app) == sorted(ids)


def test_the_account_registered_decomposed_is_stored_composed_and_found_both_ways(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    decomposed, composed = "rene\u0301@example.com", "ren\u00e9@example.com"
    data = auth.register(decomposed)

    assert data["user"]["email"] == composed
    assert users(app) == [composed]
    assert auth.login(composed).status_code == 200
    assert client.post("/api/auth/forgot-password", json={"email": decomposed}).status_code == 202
    (requested,) = events_of(app, "auth.password_reset.requested")
    assert requested["details"]["outcome"] == "sent"
    assert str(requested["user_id"]) == data["user"]["id"]


def test_a_profile_change_to_another_spelling_of_a_taken_address_is_409(
    client: FlaskClient, auth: AuthActions
) -> None:
    auth.register("ren\u00e9@example.com")
    token = auth.register("other@example.com")["access_token"]

    response = client.patch(
        "/api/users/me",
        json={"email": "RENE\u0301@example.com"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == "email_taken"


def test_normalisation_is_idempotent_and_spelling_blind() -> None:
    spellings = [
        "Jos\u00e9@Example.com",
        "jose\u0301@example.com",
        " \uff2a\uff4f\uff53\u00e9@example.com ",
    ]

    assert {normalize_email(spelling) for spelling in spellings} == {"jos\u00e9@example.com"}
    assert normalize_email(normalize_email(spellings[1])) == normalize_email(spellings[1])
