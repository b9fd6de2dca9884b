def test_register_then_read_own_profile(client, auth):
    tokens = auth.register("Someone@Example.com ")
    response = client.get("/api/users/me", headers=auth.bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json()["data"]["email"] == "someone@example.com"
