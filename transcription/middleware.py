"""Answers django-ninja gives outside its exception handlers, reshaped as the API's JSON errors."""
from django.http import HttpRequest, HttpResponse


API_PREFIXES = ("/transcribe", "/job/", "/batch/", "/models", "/health", "/v1/", "/openapi.json", "/live/",
                "/detect-language")


class JsonMethodNotAllowed:
    """django-ninja answers an unsupported method with a plain-text 405; API clients get JSON."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 405 or "json" in response.get("Content-Type", ""):
            return response
        if not request.path.startswith(API_PREFIXES):
            return response
        from .api import error_response

        allowed = response.get("Allow", "")
        answer = error_response(request, 405, f"method {request.method} is not allowed here;"
                                f" allowed: {allowed or 'none'}")
        if allowed:
            answer["Allow"] = allowed
        return answer
