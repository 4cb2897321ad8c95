"""People in a tenant, through the running stack: sign-in and its cookie, CSRF, roles enforced on
the server, personal keys, lockout, and every change on the tenant's audited account trail."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from maskline.client import JsonClient
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from tests.e2e.conftest import AS_ANSWERED, cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PASSWORD = "correct horse battery staple"
COOKIE = "__Host-maskline-session"


@dataclass
class Person:
    id: str
    login: str
    http: httpx.Client
    """Sends the session cookie and, with every change, its CSRF token (as the pages do)."""
    me: dict[str, Any]


def add(owner: JsonClient, role: str, password: str | None = PASSWORD) -> dict[str, Any]:
    login = f"{role}-{uuid.uuid4().hex[:8]}@b.example"
    body = {"login": login, "role": role, **({"password": password} if password else {})}
    return dict(owner.http.post("/v1/users", json=body).raise_for_status().json())


def sign_in(stack: Stack, login: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{stack.gateway_url}/v1/sign-in", json={"login": login, "password": password}, timeout=30)


def session_of(stack: Stack, login: str, password: str = PASSWORD) -> Person:
    answer = sign_in(stack, login, password)
    assert answer.status_code == 200, answer.text
    token = answer.cookies[COOKIE]
    me = answer.json()
    http = httpx.Client(
        base_url=stack.gateway_url, headers={"Cookie": f"{COOKIE}={token}", "X-CSRF-Token": me["csrf_token"]}, timeout=60
    )
    return Person(id=me["user"], login=login, http=http, me=me)


@pytest.fixture(scope="module")
def owner(stack: Stack) -> Iterator[JsonClient]:
    c = JsonClient(stack.gateway_url, api_key="key-b", timeout=60, retry=AS_ANSWERED)
    yield c
    c.http.put("/v1/users/policy", json={})
    c.close()


def refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status and answer.json()["code"] == code, (answer.status_code, answer.text)


def actions(owner: JsonClient, user: str) -> list[str]:
    trail = owner.http.get("/v1/users/trail").raise_for_status().json()
    return [r["event"]["data"]["action"] for r in trail if r["event"]["data"].get("user") == user]


def test_a_sign_in_sets_a_secure_http_only_same_site_cookie_and_a_new_one_each_time(stack: Stack, owner: JsonClient) -> None:
    viewer = add(owner, "viewer")
    first, second = sign_in(stack, viewer["login"]), sign_in(stack, viewer["login"])
    header = first.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=") and "Secure" in header and "HttpOnly" in header, header
    assert "SameSite=lax" in header and "Path=/" in header and "Domain" not in header, header
    assert first.cookies[COOKIE] != second.cookies[COOKIE]
    me = first.json()
    assert (me["tenant"], me["role"], me["via"], me["login"]) == ("tenant-b", "viewer", "session", viewer["login"])
    assert me["csrf_token"] and me["csrf_token"] not in header
    # The password never comes back, and no secret travels in a URL: sign-in is a JSON body.
    assert PASSWORD not in first.text
    refused(sign_in(stack, viewer["login"], "wrong password, surely"), 401, "sign_in_failed")
    refused(sign_in(stack, f"nobody-{uuid.uuid4().hex[:6]}@b.example"), 401, "sign_in_failed")


def test_a_viewer_reads_but_cannot_start_jobs(stack: Stack, owner: JsonClient, samples: Any) -> None:
    viewer = session_of(stack, add(owner, "viewer")["login"])
    assert viewer.http.get("/v1/dashboard/jobs").status_code == 200
    image = (samples / "shapes-1.png").read_bytes()
    refused(viewer.http.post("/v1/segmentations", files={"image": ("a.png", image, "image/png")}), 403, "role_forbidden")
    refused(viewer.http.post("/v1/datasets/x/expand", json={"target": "y"}), 403, "role_forbidden")
    refused(viewer.http.put("/v1/webhooks", json={}), 403, "role_forbidden")


def test_a_signed_in_change_needs_the_sessions_csrf_token(stack: Stack, owner: JsonClient, samples: Any) -> None:
    member = session_of(stack, add(owner, "member")["login"])
    image = (samples / "shapes-1.png").read_bytes()
    cookie_only = {"Cookie": member.http.headers["Cookie"]}
    refused(
        httpx.post(f"{stack.gateway_url}/v1/segmentations", headers=cookie_only, files={"image": ("a.png", image, "image/png")}),
        403,
        "csrf_failed",
    )
    forged = {**cookie_only, "X-CSRF-Token": "a-token-from-another-site"}
    refused(
        httpx.post(f"{stack.gateway_url}/v1/segmentations", headers=forged, files={"image": ("a.png", image, "image/png")}),
        403,
        "csrf_failed",
    )
    started = member.http.post("/v1/segmentations", files={"image": ("a.png", image, "image/png")}, params={"wait": 60})
    assert started.status_code in (200, 202), started.text
    assert started.json()["status"] == "completed"


def test_a_member_changes_aliases_and_grants_only_where_the_owners_allow_it(stack: Stack, owner: JsonClient) -> None:
    member = session_of(stack, add(owner, "member")["login"])
    alias = member.http.put("/v1/models/not-a-model/aliases/stable", json={"version": 1})
    grant = member.http.put("/v1/models/not-a-model/access/tenant-a", json={"state": "granted"})
    refused(alias, 403, "role_forbidden")
    refused(grant, 403, "role_forbidden")
    viewer = session_of(stack, add(owner, "viewer")["login"])
    refused(viewer.http.put("/v1/users/policy", json={"members_change_aliases": True}), 403, "role_forbidden")
    refused(member.http.put("/v1/users/policy", json={"members_change_aliases": True}), 403, "role_forbidden")
    owner.http.put("/v1/users/policy", json={"members_change_aliases": True}).raise_for_status()
    # Past the role check now: the handler answers for the model itself.
    assert member.http.put("/v1/models/not-a-model/aliases/stable", json={"version": 1}).status_code == 404
    refused(member.http.put("/v1/models/not-a-model/access/tenant-a", json={"state": "granted"}), 403, "role_forbidden")
    owner.http.put("/v1/users/policy", json={}).raise_for_status()
    refused(member.http.put("/v1/models/not-a-model/aliases/stable", json={"version": 1}), 403, "role_forbidden")
    changes = [
        r["event"]["data"] for r in owner.http.get("/v1/users/trail").json() if r["event"]["data"]["action"] == "policy-changed"
    ]
    assert [c["reason"] for c in changes[-2:]] == [
        "members may change aliases: True; grants: False",
        "members may change aliases: False; grants: False",
    ]


def test_people_are_managed_by_owners_only_and_every_change_is_audited(stack: Stack, owner: JsonClient) -> None:
    person = add(owner, "viewer")
    member = session_of(stack, add(owner, "member")["login"])
    refused(member.http.get("/v1/users"), 403, "role_forbidden")
    refused(member.http.put(f"/v1/users/{person['id']}/role", json={"role": "owner"}), 403, "role_forbidden")
    boss = session_of(stack, add(owner, "owner")["login"])
    refused(boss.http.put(f"/v1/users/{boss.id}/role", json={"role": "viewer"}), 409, "own_account")
    changed = boss.http.put(f"/v1/users/{person['id']}/role", json={"role": "member"})
    assert changed.status_code == 200 and changed.json()["role"] == "member", changed.text
    assert {u["login"]: u["role"] for u in owner.http.get("/v1/users").json()}[person["login"]] == "member"
    refused(owner.http.post("/v1/users", json={"login": person["login"], "role": "viewer"}), 409, "login_taken")
    assert boss.http.delete(f"/v1/users/{person['id']}").status_code == 204
    assert person["login"] not in [u["login"] for u in owner.http.get("/v1/users").json()]
    assert actions(owner, person["id"]) == ["user-added", "role-changed", "user-removed"]
    records = [r for r in owner.http.get("/v1/users/trail").json() if r["event"]["data"].get("user") == person["id"]]
    role_change = records[1]["event"]["data"]
    assert (role_change["by"], role_change["previous_role"], role_change["role"]) == (boss.id, "viewer", "member")
    assert records[0]["event"]["data"]["by"] == "tenant-key"
    assert PASSWORD not in str(records)
    # Another tenant sees none of it.
    other = JsonClient(stack.gateway_url, api_key="key-c", timeout=60, retry=AS_ANSWERED)
    assert person["login"] not in other.http.get("/v1/users").text
    assert member.id not in other.http.get("/v1/users/trail").text
    refused(other.http.put(f"/v1/users/{member.id}/role", json={"role": "owner"}), 404, "user_not_found")
    refused(other.http.delete(f"/v1/users/{member.id}"), 404, "user_not_found")
    other.close()
    assert member.http.get("/v1/me").json()["role"] == "member"


def test_a_personal_key_acts_with_its_owners_role_until_revoked_or_the_person_leaves(stack: Stack, owner: JsonClient) -> None:
    member = session_of(stack, add(owner, "member")["login"])
    made = member.http.post("/v1/me/keys", json={"name": "laptop"})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key.startswith("mlk_") and [k["name"] for k in member.http.get("/v1/me/keys").json()] == ["laptop"]
    assert member.http.get("/v1/me/keys").json()[0].get("key") is None  # shown once, when made
    by_key = httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    me = by_key.get("/v1/me").json()
    assert (me["tenant"], me["role"], me["via"], me["user"]) == ("tenant-b", "member", "personal-key", member.id)
    # A key needs no CSRF token (no browser sends it by itself) and acts with the person's role,
    # but makes no more keys: a stolen key cannot make itself permanent.
    refused(by_key.post("/v1/me/keys", json={"name": "second"}), 403, "session_required")
    refused(by_key.put("/v1/me/password", json={"current": PASSWORD, "new": "x" * 20}), 403, "session_required")
    assert member.http.post("/v1/me/keys", json={"name": "second"}).status_code == 201
    refused(by_key.put("/v1/webhooks", json={}), 403, "role_forbidden")
    owner.http.put(f"/v1/users/{member.id}/role", json={"role": "viewer"}).raise_for_status()
    refused(by_key.post("/v1/segmentations", files={"image": ("a.png", b"x", "image/png")}), 403, "role_forbidden")
    first = next(k for k in member.http.get("/v1/me/keys").json() if k["name"] == "laptop")
    assert member.http.delete(f"/v1/me/keys/{first['id']}").status_code == 204
    refused(by_key.get("/v1/me"), 401, "unauthorized")
    keys = member.http.get("/v1/me/keys").json()
    assert [k["name"] for k in keys] == ["second"]
    assert actions(owner, member.id)[:2] == ["user-added", "signed-in"]
    assert {"key-created", "key-revoked", "role-changed"} <= set(actions(owner, member.id))
    # A tenant's key has no person behind it: no personal keys.
    refused(owner.http.post("/v1/me/keys", json={"name": "x"}), 409, "no_person")
    owner.http.delete(f"/v1/users/{member.id}").raise_for_status()
    refused(member.http.get("/v1/me"), 401, "session_ended")
    by_key.close()


def test_repeated_failures_lock_an_account_even_against_the_right_password(stack: Stack, owner: JsonClient) -> None:
    person = add(owner, "member")
    # From an address of its own (the stack trusts X-Forwarded-For), so the per-address limit stays apart.
    address = {"X-Forwarded-For": "198.51.100.23"}

    def attempt(login: str, password: str) -> httpx.Response:
        return httpx.post(f"{stack.gateway_url}/v1/sign-in", json={"login": login, "password": password}, headers=address)

    for _ in range(5):
        refused(attempt(person["login"], "not it at all"), 401, "sign_in_failed")
    locked = attempt(person["login"], PASSWORD)
    refused(locked, 401, "sign_in_failed")
    # A locked account, a wrong password and a name nobody has are answered alike: no name is told apart.
    unknown = attempt(f"nobody-{uuid.uuid4().hex[:6]}@b.example", PASSWORD)
    assert locked.json()["detail"] == unknown.json()["detail"] and "retry-after" not in locked.headers
    view = next(u for u in owner.http.get("/v1/users").json() if u["id"] == person["id"])
    assert view["locked_until"]

    def audited() -> list[str]:
        return actions(owner, person["id"])

    wait_until(lambda: len(audited()) >= 8, 20, "the failures on the trail (published after the answers)")
    trail = audited()
    # Published after each answer, so their order on the trail may differ a little from the tries'.
    assert Counter(trail) == {"user-added": 1, "sign-in-failed": 6, "locked": 1}, trail
    reasons = [
        r["event"]["data"]["reason"]
        for r in owner.http.get("/v1/users/trail").json()
        if r["event"]["data"].get("user") == person["id"]
    ]
    assert reasons.count("wrong password") == 5 and reasons.count("the account is locked: the password was not checked") == 1


def test_a_sign_in_posted_by_another_site_is_refused(stack: Stack, owner: JsonClient) -> None:
    login = add(owner, "viewer")["login"]
    # A cross-site form can send text/plain, never application/json without a preflight.
    body = json.dumps({"login": login, "password": PASSWORD})
    form = httpx.post(f"{stack.gateway_url}/v1/sign-in", content=body, headers={"Content-Type": "text/plain"})
    refused(form, 415, "unsupported_media_type")
    cross = httpx.post(
        f"{stack.gateway_url}/v1/sign-in", json={"login": login, "password": PASSWORD}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    refused(cross, 403, "cross_site")
    assert COOKIE not in form.cookies and COOKIE not in cross.cookies


def test_a_viewer_or_member_of_an_operator_tenant_is_no_operator(stack: Stack) -> None:
    """tenant-a operates the platform (its keys see every tenant's jobs); its people do only as owners."""
    for role in ("viewer", "member"):
        login = f"{role}-{uuid.uuid4().hex[:8]}@a.example"
        operator_key = JsonClient(stack.gateway_url, api_key="key-a", timeout=60, retry=AS_ANSWERED)
        operator_key.http.post("/v1/users", json={"login": login, "role": role, "password": PASSWORD}).raise_for_status()
        assert any(j["tenant"] != "tenant-a" for j in operator_key.http.get("/v1/dashboard/jobs", params={"limit": 500}).json())
        operator_key.close()
        person = session_of(stack, login)
        assert person.me["operator"] is False
        jobs = person.http.get("/v1/dashboard/jobs", params={"limit": 500}).json()
        assert {j["tenant"] for j in jobs} <= {"tenant-a"}
        assert {d["tenant"] for d in person.http.get("/v1/dlq").json()} <= {"tenant-a"}
        refused(person.http.get("/v1/audit/verify"), 403, "forbidden")


def test_two_people_of_one_tenant_never_get_each_others_kept_answers(stack: Stack, owner: JsonClient) -> None:
    first, second = (session_of(stack, add(owner, "member")["login"]) for _ in range(2))
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex[:8]}"}
    path, params = "/v1/models/some-model/access-requests", {"owner": "tenant-c"}
    asked = first.http.post(path, params=params, json={"note": "same"}, headers=key)
    assert asked.status_code == 200, asked.text
    assert first.http.post(path, params=params, json={"note": "same"}, headers=key).headers.get("idempotent-replayed") == "true"
    theirs = second.http.post(path, params=params, json={"note": "same"}, headers=key)
    assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers


def test_signing_out_or_changing_the_password_ends_the_session(stack: Stack, owner: JsonClient) -> None:
    login = add(owner, "viewer")["login"]
    here, elsewhere = session_of(stack, login), session_of(stack, login)
    changed = here.http.put("/v1/me/password", json={"current": PASSWORD, "new": "another long passphrase"})
    assert changed.status_code == 200, changed.text
    refused(elsewhere.http.get("/v1/me"), 401, "session_ended")
    refused(here.http.get("/v1/me"), 401, "session_ended")  # this browser got a new cookie with the answer
    fresh = changed.cookies[COOKIE]
    assert httpx.get(f"{stack.gateway_url}/v1/me", headers={"Cookie": f"{COOKIE}={fresh}"}).json()["login"] == login
    refused(sign_in(stack, login), 401, "sign_in_failed")
    again = session_of(stack, login, "another long passphrase")
    assert again.http.post("/v1/sign-out").status_code == 200
    refused(again.http.get("/v1/me"), 401, "session_ended")
    refused(httpx.post(f"{stack.gateway_url}/v1/sign-out", headers={"Cookie": f"{COOKIE}={fresh}"}), 403, "csrf_failed")


def test_the_cli_adds_a_person_who_then_signs_in_and_changes_their_role(stack: Stack, owner: JsonClient) -> None:
    login = f"cli-{uuid.uuid4().hex[:8]}@b.example"
    added = cli(
        stack, "users", "add", login, "--role", "member", "--password-stdin", "--json", api_key="key-b", stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    user = json.loads(added.stdout)
    assert (user["login"], user["role"], user["password"]) == (login, "member", True)
    assert PASSWORD not in added.stdout + added.stderr
    assert session_of(stack, login).me["role"] == "member"
    assert cli(stack, "users", "role", user["id"], "viewer", api_key="key-b").returncode == 0
    listed = cli(stack, "users", "list", api_key="key-b")
    assert any(login in line and "viewer" in line for line in listed.stdout.splitlines()), listed.stdout
    refused_cli = cli(stack, "users", "list", api_key=session_key(stack, login))
    assert refused_cli.returncode != 0 and "needs the owner role" in refused_cli.stderr, refused_cli.stderr
    assert cli(stack, "users", "rm", user["id"], api_key="key-b").returncode == 0
    assert login not in cli(stack, "users", "list", api_key="key-b").stdout


def session_key(stack: Stack, login: str) -> str:
    """A personal key of the person (a viewer now): what they would hand the CLI."""
    person = session_of(stack, login)
    return str(person.http.post("/v1/me/keys", json={"name": "cli"}).raise_for_status().json()["key"])
