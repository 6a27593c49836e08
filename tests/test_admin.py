"""The admin HTTP API through the real app and the scripted sidecar."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from bridge.store import keys
from bridge.web.app import create_app
from tests.conftest import SettingsFactory, scripted_sidecar_command, wait_for

TOKEN = {"authorization": "Bearer adm-1"}
QR = "2@QR-ONE,noise=,identity=,adv=,Mac OS"


@pytest.fixture
def api(make_settings: SettingsFactory, redis_client: redis.Redis,
        tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(server_admin_token="adm-1",
                             baileys_sidecar_command=scripted_sidecar_command(
                                 tmp_path / "control", "pairing", "linked"))
    with TestClient(create_app(settings)) as client:
        yield client


def test_without_a_token_configured_the_api_is_off(
        make_settings: SettingsFactory, redis_client: redis.Redis) -> None:
    with TestClient(create_app(make_settings())) as client:
        answer = client.get("/api/instances")
        assert answer.status_code == 404 and "SERVER_ADMIN_TOKEN" in answer.json()["error"]


def test_a_missing_or_wrong_token_changes_nothing(api: TestClient,
                                                  redis_client: redis.Redis) -> None:
    body = {"account_id": 1, "inbox_id": 7}
    assert api.post("/api/instances", json=body).status_code == 401
    assert api.post("/api/instances", json=body,
                    headers={"authorization": "Bearer nope"}).status_code == 401
    assert api.post("/api/instances/1-7/stop", headers={"authorization": "x"}).status_code == 401
    # Non-ASCII (latin-1 on the wire): refused like any wrong token, not a 500.
    assert api.post("/api/instances", json=body,
                    headers={"authorization": "Bearer adm-é".encode()}).status_code == 401
    assert redis_client.scard(keys.INSTANCES) == 0


def test_link_then_read_the_qr_in_every_format(api: TestClient) -> None:
    answer = api.post("/api/instances", json={"account_id": 1, "inbox_id": 7,
                                              "inbox_name": "Loja"}, headers=TOKEN)
    assert answer.status_code == 202 and answer.json()["outcome"] == "linking"
    wait_for(lambda: api.get("/api/instances/1-7", headers=TOKEN).json()["state"] ==
             "qr_pending", message="a QR")
    assert api.get("/api/instances/1-7/qr?format=text", headers=TOKEN).text == QR
    png = api.get("/api/instances/1-7/qr", headers=TOKEN)
    assert png.headers["content-type"] == "image/png"
    import zxingcpp
    from PIL import Image

    (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert code.text == QR
    svg = api.get("/api/instances/1-7/qr?format=svg", headers=TOKEN)
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    listing = api.get("/api/instances", headers=TOKEN).json()["instances"]
    assert [(i["instance_id"], i["label"], i["qr"]) for i in listing] == [("1-7", "Loja", True)]
    assert "2@" not in json.dumps(listing)  # the QR itself only through /qr


def test_steering_an_instance(api: TestClient, tmp_path: Path) -> None:
    api.post("/api/instances", json={"account_id": 1, "inbox_id": 7}, headers=TOKEN)
    (tmp_path / "control").mkdir(exist_ok=True)
    (tmp_path / "control" / "1-7.scanned").touch()
    wait_for(lambda: api.get("/api/instances/1-7", headers=TOKEN).json()["state"] == "open",
             message="open")
    assert api.post("/api/instances/1-7/stop", headers=TOKEN).status_code == 202
    wait_for(lambda: api.get("/api/instances/1-7", headers=TOKEN).json()["state"] == "stopped",
             message="stopped")
    assert api.post("/api/instances/1-7/start", headers=TOKEN).status_code == 202
    wait_for(lambda: api.get("/api/instances/1-7", headers=TOKEN).json()["state"] == "open",
             message="open again")
    assert api.post("/api/instances/1-7/restart", headers=TOKEN).status_code == 202
    assert api.post("/api/instances/1-7/logout", headers=TOKEN).status_code == 202
    wait_for(lambda: not api.get("/api/instances/1-7", headers=TOKEN).json()["linked"],
             message="unlinked")
    assert api.delete("/api/instances/1-7", headers=TOKEN).status_code == 202
    wait_for(lambda: api.get("/api/instances/1-7", headers=TOKEN).status_code == 404,
             message="deleted")
    assert api.post("/api/instances/1-9/stop", headers=TOKEN).status_code == 404
    assert api.get("/api/instances/x-y", headers=TOKEN).status_code == 400


def test_bad_bodies_get_a_clear_400(api: TestClient) -> None:
    for body in ({"account_id": 1}, {"account_id": 0, "inbox_id": 7},
                 {"account_id": 1, "inbox_id": 7, "pairing_phone": "call me"},
                 {"account_id": 1, "inbox_id": 7, "surprise": True}):
        answer = api.post("/api/instances", json=body, headers=TOKEN)
        assert answer.status_code == 400 and "invalid request" in answer.json()["error"]


def test_openapi_documents_every_route(api: TestClient) -> None:
    schema = api.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert {"/api/instances", "/api/instances/{instance_id}", "/api/instances/{instance_id}/qr",
            "/api/instances/{instance_id}/stop", "/api/instances/{instance_id}/pairing-code"} \
        <= set(paths)
    assert set(paths["/api/instances"]) == {"get", "post"}
    assert "LinkRequest" in schema["components"]["schemas"]
