"""OpenAPI descriptions for routes that read their bodies themselves.

Dialect routes parse the raw body (to answer in their own error shapes, and to refuse an
oversized body before reading it), so FastAPI cannot infer their request schemas. These helpers
declare them from the dialects' wire models, which keeps /openapi.json meaningful for clients
and for the schemathesis fuzz test."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its local `$defs` references resolved in place (no cycles here)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return inline(model.model_json_schema())


def request_body(
    schema: dict[str, Any], examples: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body matches `schema`; `examples` (from
    `example`) are bodies that work as they are against the default catalog."""
    content: dict[str, Any] = {"schema": schema}
    if examples:
        content["examples"] = examples
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def example(summary: str, value: Any) -> dict[str, Any]:
    """One named example of an OpenAPI media type or parameter."""
    return {"summary": summary, "value": value}


# The ways a key reaches easel (api/auth.py): Swagger UI's Authorize button offers each.
BEARER = "bearer"
GOOGLE_KEY_HEADER = "googleApiKey"
GOOGLE_KEY_QUERY = "googleApiKeyQuery"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {"type": "http", "scheme": "bearer",
             "description": "`Authorization: Bearer <key>`, one of EASEL_API_KEYS (every "
                            "dialect; on Google's Vertex paths it stands for the OAuth token)"},
    GOOGLE_KEY_HEADER: {"type": "apiKey", "in": "header", "name": "x-goog-api-key",
                        "description": "Google's API key header (Google's routes, /easel)"},
    GOOGLE_KEY_QUERY: {"type": "apiKey", "in": "query", "name": "key",
                       "description": "Google's `?key=` query parameter (Google's routes)"},
}


def security(*schemes: str, optional: bool = False) -> dict[str, Any]:
    """`openapi_extra` naming the schemes a route takes its key by, any one of them.
    `optional`: the key may also come another way (Runware's body) or not be needed (meta
    routes, unless protected)."""
    options: list[dict[str, list[str]]] = [{scheme: []} for scheme in schemes]
    return {"security": [*options, {}] if optional else options}


def responses(
    ok: type[BaseModel], error: type[BaseModel], statuses: tuple[int, ...]
) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {200: {"model": ok, "description": "Success"}}
    for status in statuses:
        out[status] = {"model": error, "description": DESCRIPTIONS.get(status, "Error")}
    return out


DESCRIPTIONS = {
    400: "Invalid request", 401: "Missing or invalid API key", 404: "Not found",
    409: "Conflict (idempotency key reused)", 413: "Request body too large",
    422: "Unprocessable", 429: "Rate limited (see Retry-After)",
    500: "Generation failed", 503: "Unavailable or queue full (see Retry-After)",
    504: "Not ready in time",
}
ERRORS = (400, 401, 404, 409, 413, 422, 429, 500, 503, 504)


class Open(BaseModel):
    """Response models document the envelope; item fields vary by output type."""

    model_config = ConfigDict(extra="allow")
