from tests.conftest import LoginAs


async def test_home_lists_demo_teams(demo, login_as: LoginAs) -> None:
    client = await login_as("admin@demo.test")
    response = await client.get("/")
    body = await response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Copenhagen Fleet" in body and "Oslo Yard" not in body
