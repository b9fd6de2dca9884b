import pytest
from flask import session


def test_register_then_read_own_profile(client, auth):
    tokens = auth.register("Someone@Example.com ")
    response = client.get("/api/users/me", headers=auth.bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["data"]["email"] == "someone@example.com"


def test_the_api_keeps_no_cookie_session(app, client, auth):
    """Clients send bearer tokens: no response sets a cookie, and a session cookie a client
    sends is not read."""
    tokens = auth.register()
    headers = {**auth.bearer(tokens["access_token"]), "Cookie": "session=eyJ4IjoxfQ.x.y"}
    for response in (
        client.get("/health", headers=headers),
        client.get("/api/users/me", headers=headers),
    ):
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
    with app.test_request_context("/", headers=headers):
        assert dict(session) == {}
        with pytest.raises(RuntimeError):
            session["user_id"] = "someone"
