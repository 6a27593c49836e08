"""The admin HTTP API: instances for scripts and dashboards (`/api/...`, OpenAPI at
`/api/openapi.json`).

Bearer token from SERVER_ADMIN_TOKEN; with no token configured the API is off (404), not open.
Every route does what the matching agent command does (bridge/operations.py).
"""

from __future__ import annotations

import io
from dataclasses import asdict
from typing import Any

import segno
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from bridge.ids import InstanceId, normalize_phone, parse_instance_id
from bridge.jobs.notes import qr_png
from bridge.operations import InstanceView, Operations
from bridge.web.security import admin_allowed
from bridge.web.services import Services


class LinkRequest(BaseModel):
    """Create (or re-link) an instance: a WhatsApp number for a Chatwoot inbox."""

    model_config = ConfigDict(extra="forbid")
    account_id: int = Field(ge=1)
    inbox_id: int = Field(ge=1)
    inbox_name: str | None = None
    # Where QR codes and state notes go (a Chatwoot conversation); none: only this API.
    notify_conversation_id: int | None = Field(None, ge=1)
    pairing_phone: str | None = None  # link by pairing code instead of QR codes
    replace_number: bool = False  # unlink a healthy number first


class PairingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: str


def _problem(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def _guard(request: Request) -> tuple[Services, Operations] | JSONResponse:
    services: Services = request.app.state.services
    if services.settings.server_admin_token is None:
        return _problem(404, "the admin API is off: set SERVER_ADMIN_TOKEN to enable it")
    if not admin_allowed(services.settings, request):
        return _problem(401, "admin token required (Authorization: Bearer ...)")
    return services, Operations(services)


def _view_json(view: InstanceView) -> dict[str, Any]:
    data = asdict(view)
    data["qr"] = view.qr is not None  # the QR itself only through /qr, on purpose
    return data


def _instance(request: Request) -> InstanceId | JSONResponse:
    value = request.path_params["instance_id"]
    try:
        parse_instance_id(value)
    except ValueError:
        return _problem(400, f"not an instance id (account-inbox, e.g. 1-7): {value}")
    return InstanceId(value)


def _guarded_instance(request: Request) -> tuple[Operations, InstanceId] | JSONResponse:
    """The token checked, then the path's instance id parsed: what every per-instance route
    needs first; the refusal when either fails."""
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    instance_id = _instance(request)
    if isinstance(instance_id, JSONResponse):
        return instance_id
    return guard[1], instance_id


async def list_instances(request: Request) -> Response:
    """
    summary: Every instance with its state.
    responses:
      200: {description: "A list of instances."}
      401: {description: "Missing or wrong admin token."}
    """
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    _, ops = guard
    return JSONResponse({"instances": [_view_json(v) for v in await ops.views()]})


async def create_instance(request: Request) -> Response:
    """
    summary: Link a WhatsApp number to a Chatwoot inbox (QR codes, or a pairing code).
    requestBody:
      content:
        application/json:
          schema: {$ref: "#/components/schemas/LinkRequest"}
    responses:
      202: {description: "Linking started, or resuming a saved session."}
      200: {description: "Already linked and healthy; nothing changed."}
      400: {description: "Invalid body."}
      401: {description: "Missing or wrong admin token."}
    """
    guard = _guard(request)
    if isinstance(guard, JSONResponse):
        return guard
    _, ops = guard
    try:
        body = LinkRequest.model_validate_json(await request.body())
        phone = normalize_phone(body.pairing_phone).lstrip("+") if body.pairing_phone else None
    except (ValidationError, ValueError) as err:
        return _problem(400, f"invalid request: {err}")
    notify = (body.account_id, body.notify_conversation_id) \
        if body.notify_conversation_id else None
    outcome = await ops.link(body.account_id, body.inbox_id, inbox_name=body.inbox_name,
                             notify=notify, pairing_phone=phone,
                             replace_number=body.replace_number)
    view = await ops.view(InstanceId(f"{body.account_id}-{body.inbox_id}"))
    return JSONResponse({"outcome": outcome, "instance": _view_json(view) if view else None},
                        status_code=200 if outcome == "already_linked" else 202)


async def get_instance(request: Request) -> Response:
    """
    summary: One instance.
    responses:
      200: {description: "The instance."}
      404: {description: "No such instance."}
    """
    target = _guarded_instance(request)
    if isinstance(target, JSONResponse):
        return target
    ops, instance_id = target
    view = await ops.view(instance_id)
    return _problem(404, "no such instance") if view is None else JSONResponse(_view_json(view))


def _action(name: str) -> Any:
    async def endpoint(request: Request) -> Response:
        target = _guarded_instance(request)
        if isinstance(target, JSONResponse):
            return target
        ops, instance_id = target
        done = await getattr(ops, name)(instance_id)
        if not done:
            return _problem(404, "no such instance")
        return JSONResponse({"outcome": name}, status_code=202)

    endpoint.__doc__ = f"""
    summary: {name.capitalize()} the instance ({_ACTIONS[name]}).
    responses:
      202: {{description: "Accepted; the change happens in the background."}}
      401: {{description: "Missing or wrong admin token."}}
      404: {{description: "No such instance."}}
    """
    endpoint.__name__ = f"{name}_instance"
    return endpoint


_ACTIONS = {
    "start": "run again with the saved session",
    "stop": "stop the sidecar, keep the session",
    "restart": "stop and start again",
    "logout": "unlink the number from WhatsApp and wipe the session",
    "delete": "unlink, wipe and forget the instance",
}


async def get_qr(request: Request) -> Response:
    """
    summary: The QR code of an instance waiting to be linked (?format=png|svg|text).
    responses:
      200: {description: "The QR code."}
      404: {description: "No such instance, or it is not showing a QR code."}
    """
    target = _guarded_instance(request)
    if isinstance(target, JSONResponse):
        return target
    ops, instance_id = target
    view = await ops.view(instance_id)
    if view is None or view.qr is None:
        return _problem(404, "this instance is not showing a QR code")
    kind = request.query_params.get("format", "png")
    if kind == "text":
        return Response(view.qr, media_type="text/plain")
    if kind == "svg":
        buffer = io.BytesIO()
        segno.make(view.qr, error="l").save(buffer, kind="svg", scale=6, border=4)
        return Response(buffer.getvalue(), media_type="image/svg+xml")
    if kind == "png":
        return Response(qr_png(view.qr), media_type="image/png")
    return _problem(400, "format must be png, svg or text")


async def request_pairing_code(request: Request) -> Response:
    """
    summary: Link by pairing code; the code then shows at GET /api/instances/{id}.
    requestBody:
      content:
        application/json:
          schema: {$ref: "#/components/schemas/PairingRequest"}
    responses:
      202: {description: "Pairing started; poll the instance for `pairing_code`."}
      400: {description: "Invalid phone number."}
      404: {description: "No such instance."}
    """
    target = _guarded_instance(request)
    if isinstance(target, JSONResponse):
        return target
    ops, instance_id = target
    try:
        phone = normalize_phone(PairingRequest.model_validate_json(await request.body()).phone)
    except (ValidationError, ValueError) as err:
        return _problem(400, f"invalid request: {err}")
    view = await ops.view(instance_id)
    if view is None:
        return _problem(404, "no such instance")
    await ops.link(view.account_id, view.inbox_id, pairing_phone=phone.lstrip("+"),
                   replace_number=view.linked)
    return JSONResponse({"outcome": "pairing"}, status_code=202)


_SCHEMAS = SchemaGenerator({
    "openapi": "3.0.3",
    "info": {"title": "Ponte admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"LinkRequest": LinkRequest.model_json_schema(),
                    "PairingRequest": PairingRequest.model_json_schema()},
    },
    "security": [{"bearer": []}],
})


async def openapi(request: Request) -> Response:
    """The OpenAPI description of this API (open: it holds no data)."""
    schema = _SCHEMAS.get_schema(routes=list(ROUTES))
    return JSONResponse(schema)


_I = "/api/instances/{instance_id}"
ROUTES: list[BaseRoute] = [
    Route("/api/instances", list_instances, methods=["GET"]),
    Route("/api/instances", create_instance, methods=["POST"]),
    Route(_I, get_instance, methods=["GET"]),
    *(Route(f"{_I}/{name}", _action(name), methods=["POST"])
      for name in ("start", "stop", "restart", "logout")),
    Route(_I, _action("delete"), methods=["DELETE"]),
    Route(f"{_I}/qr", get_qr, methods=["GET"]),
    Route(f"{_I}/pairing-code", request_pairing_code, methods=["POST"]),
    Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
]
