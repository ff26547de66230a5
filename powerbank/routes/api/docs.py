"""The API's OpenAPI document (/api/openapi.json) and its documentation page (/api/docs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from quart import Blueprint, Quart, Response, current_app
from quart_schema import HttpSecurityScheme, OpenAPIProvider, PydanticDumpOptions, QuartSchema
from werkzeug.routing import BaseConverter, Rule

from powerbank.routes import api
from powerbank.routes.api import schemas
from powerbank.web.render import render_page

blueprint = Blueprint("api_docs", __name__, url_prefix="/api")


class ApiOpenAPIProvider(OpenAPIProvider):
    """Describe only the JSON API, with problem documents under their own media type."""

    def generate_rules(self) -> Iterable[Rule]:
        return (rule for rule in super().generate_rules() if rule.endpoint.startswith(f"{api.blueprint.name}."))

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if parameter["schema"].get("type") == "integer":
            parameter["schema"].update(minimum=0, maximum=schemas.MAX_ID)
        return parameter

    def build_request_body(self, model: type, source: Any) -> tuple[dict, dict]:
        body, components = super().build_request_body(model, source)
        return body, _hoist(body["content"], components)

    def build_response_object(self, model: type, headers_model: type | None) -> tuple[dict, dict]:
        response, components = super().build_response_object(model, headers_model)
        if model is schemas.Problem:
            response["content"] = {api.PROBLEM_MEDIA_TYPE: response["content"]["application/json"]}
        if model is schemas.CsvText:
            response["content"] = {"text/csv": {"schema": {"type": "string"}}}
        return response, _hoist(response["content"], components)


def _hoist(content: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move a body's schema into the components and refer to it, so each model is named once."""
    for media in content.values():
        schema = media["schema"]
        if schema.get("type") == "object" and "title" in schema:
            components = {**components, schema["title"]: schema}
            media["schema"] = {"$ref": f"#/components/schemas/{schema['title']}"}
    return components


def init_openapi(app: Quart) -> None:
    """Serve the OpenAPI document at /api/openapi.json (quart-schema adds no other route)."""
    QuartSchema(
        app,
        openapi_path="/api/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={
            "title": "PowerBank API",
            "version": "1",
            "description": "Read teams and charge points, set Facility IDs, sign charge points up for PowerBank "
            "and read the history. Every request sends Authorization: Bearer <token>.",
        },
        security_schemes={"bearerAuth": HttpSecurityScheme(scheme="bearer")},
        security=[{"bearerAuth": []}],
        # quart-schema hands these to pydantic's model_dump, which takes `mode` too; its TypedDict omits it.
        pydantic_dump_options=cast(PydanticDumpOptions, {"mode": "json"}),
        openapi_provider_class=ApiOpenAPIProvider,
    )


def _type_label(schema: dict[str, Any]) -> str:
    """Return a short human description of a JSON schema's type."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type_label(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f'"{value}"' for value in schema["enum"])
    if "const" in schema:
        return f'"{schema["const"]}"'
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type_label(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {_type_label(schema['additionalProperties'])}"
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    return str(kind)


def _fields(schema: dict[str, Any]) -> list[dict[str, str | bool]]:
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "type": _type_label(prop),
            "required": name in required,
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


@blueprint.get("/docs")
async def docs() -> Response:
    """Render the OpenAPI document as a page (no scripts, no CDN)."""
    document = current_app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    operations = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            operations.append(
                {
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type_label(p["schema"]),
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in operation.get("parameters", [])
                    ],
                    "body": _type_label(body) if body else None,
                    "responses": [
                        {
                            "status": status,
                            "type": _type_label(next(iter(response["content"].values()))["schema"]),
                            "media_type": next(iter(response["content"])),
                            "description": response.get("description", ""),
                        }
                        for status, response in sorted(operation["responses"].items())
                    ],
                }
            )
    models = {name: _fields(schema) for name, schema in sorted(document["components"]["schemas"].items())}
    return await render_page(
        "api/docs.html", document=document, operations=operations, models=models, problem_types=api.PROBLEM_TYPES
    )
