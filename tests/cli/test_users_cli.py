"""``relais users add|list|disable`` through the real command, then logging in with the account
on the real web server (bot/web/user_commands.py, bot/web/auth.py)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.cli.relais_runner import Relais
from tests.web.conftest import StartServer, login_form_token, make_ui_server  # noqa: F401  (fixture)

PASSWORD = "a long enough pass phrase"
EXPERT = "chloe.qualite@boulangerie-doree.example"


async def _try_login(base_url: str, email: str, password: str) -> int:
    async with aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get("/login") as page:
            token = login_form_token(await page.text())
        async with http.post("/login", data={"email": email, "password": password, "_csrf": token},
                             allow_redirects=False) as resp:
            return resp.status


# the account code runs on PostgreSQL in tests/web/test_auth.py; here the command itself (SQLite)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_user_added_on_the_command_line_logs_in_until_disabled(
    relais: Relais, make_ui_server: StartServer
) -> None:
    done = relais("users", "add", "Chloe.Qualite@Boulangerie-Doree.example", "--role", "expert", "--expert", EXPERT,
                  "--name", "Chloé", "--language", "en", "--password-stdin", stdin=PASSWORD + "\n")
    assert "user chloe.qualite@boulangerie-doree.example added: role expert, language en" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    listed = relais("users", "list", "--format", "json").stdout
    assert json.loads(listed) == [
        {
            "email": EXPERT, "name": "Chloé", "role": "expert", "language": "en", "expert": EXPERT,
            "active": True, "created_at": json.loads(listed)[0]["created_at"], "last_login_at": None,
        }
    ]
    assert "argon2" not in listed and "argon2" not in relais("users", "list").stdout
    server = await make_ui_server()
    assert await _try_login(server.base_url, EXPERT, PASSWORD) == 303
    assert await _try_login(server.base_url, EXPERT, PASSWORD + "x") == 401
    disabled = relais("users", "disable", EXPERT)
    assert f"user {EXPERT} disabled" in disabled.stdout
    assert await _try_login(server.base_url, EXPERT, PASSWORD) == 401
    relais("users", "enable", EXPERT)
    changed = relais("users", "password", EXPERT, "--password-stdin", stdin="another pass phrase\n")
    assert f"user {EXPERT} has a new password" in changed.stdout
    assert await _try_login(server.base_url, EXPERT, PASSWORD) == 401
    assert await _try_login(server.base_url, EXPERT, "another pass phrase") == 303


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_users_add_explains_what_is_wrong(relais: Relais) -> None:
    relais("users", "add", "cm@example.com", "--role", "community_manager", "--password-stdin", stdin=PASSWORD + "\n")
    cases = [
        (("cm@example.com", "--role", "admin"), PASSWORD, 1, "a user with the email cm@example.com already exists"),
        (("new@example.com", "--role", "admin"), "short pass", 1, "the password must have at least 12 characters"),
        (("new@example.com", "--role", "boss"), PASSWORD, 2,
         "invalid choice: 'boss' (choose from 'community_manager', 'expert', 'manager', 'admin')"),
        (("new@example.com", "--role", "expert", "--expert", "nobody@example.com"), PASSWORD, 1,
         "no expert with the email nobody@example.com in the routing rules"),
    ]
    for args, password, status, message in cases:
        done = relais("users", "add", *args, "--password-stdin", stdin=password + "\n", check=False)
        assert done.returncode == status, (args, done.stderr)
        assert message in done.stderr
        assert password not in done.stderr
    listed = json.loads(relais("users", "list", "--format", "json").stdout)
    assert [u["email"] for u in listed] == ["cm@example.com"]
