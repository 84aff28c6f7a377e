"""What every management API view shares: secret-key auth, site scoping, error shape.

Views never call ``Model.objects`` for site data directly: they subclass
``SiteScopedMixin`` and use ``self.site`` / ``self.scoped(queryset)``, so a key or a
user of site A can never reach site B.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views import defaults
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, permissions, serializers
from rest_framework.views import exception_handler as drf_exception_handler

from tracking.authentication import SecretKeyAuthentication
from tracking.models import Site


class ErrorSerializer(serializers.Serializer):
    """Every API error: ``code`` and ``message``, plus ``errors`` by field for bad input."""

    code = serializers.CharField()
    message = serializers.CharField()
    errors = serializers.DictField(required=False)


THROTTLED = OpenApiResponse(
    ErrorSerializer,
    description="too many requests: the caller is past `API_RATE_LIMIT` (export and delete: "
    "`API_HEAVY_RATE_LIMIT`), or its address past `API_AUTH_FAILURE_RATE_LIMIT` wrong secret "
    "keys; retry after `Retry-After` seconds",
)


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, plus the 429 every rate-limited operation may answer
    (tracking.throttling), documented here once rather than on each view."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        limited = self.view.throttle_classes or SecretKeyAuthentication in self.view.authentication_classes
        if limited and "429" not in responses:
            throttled = self._get_response_for_code(THROTTLED, "429", direction=direction)
            throttled.setdefault("headers", {})["Retry-After"] = {
                "schema": {"type": "integer"},
                "description": "seconds to wait before trying again",
            }
            responses["429"] = throttled
        return responses


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's 404 (``handler404``): under /api/ (an id that is not a number, a path
    that does not exist) and /v1/ the API's JSON error shape, elsewhere the app's page."""
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"code": "not_found", "message": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The site's 400 for what Django itself refuses (``handler400``: too many query
    fields, a host not allowed): under /api/ and /v1/ the API's JSON error shape."""
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"code": "bad_request", "message": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """The site's 500 (``handler500``): under /api/ the API's JSON error shape, so a
    client reads ``code`` and ``message`` as from any other error; elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "server_error", "message": "Server error."}, status=500)
    return defaults.server_error(request)


def sites_for_request(request):
    if isinstance(request.auth, Site):
        return Site.objects.filter(pk=request.auth.pk)
    return Site.objects.for_user(request.user)


class IsSiteMember(permissions.BasePermission):
    message = "You have no access to this site."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated)


class SiteScopedMixin:
    """Resolves ``self.site`` for the request: the secret key's site, or for a logged-in
    user the ``site`` query parameter / URL kwarg among their memberships."""

    permission_classes = [IsSiteMember]

    @property
    def site(self) -> Site:
        if not hasattr(self, "_site"):
            self._site = self._resolve_site()
        return self._site

    def _resolve_site(self) -> Site:
        """The same reading of ``site`` for a secret key and a session (``site=01`` is
        site 1 for both; a session needs it, a key's own site is the default)."""
        request = self.request
        wanted = self.kwargs.get("site_id") or request.query_params.get("site")
        if wanted:
            text = str(wanted)
            if not (text.isascii() and text.isdigit() and len(text) < 19):
                raise exceptions.ValidationError({"site": ["Must be a site id."]})
            wanted = int(text)
        if isinstance(request.auth, Site):
            if wanted and wanted != request.auth.pk:
                raise Http404
            return request.auth
        if not wanted:
            raise exceptions.ValidationError({"site": ["This parameter is required."]})
        return get_object_or_404(Site.objects.for_user(request.user), pk=wanted)


def exception_handler(exc, context):
    """DRF errors in Footprint's shape: ``code`` and ``message`` plus field details."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    code = "not_found" if isinstance(exc, Http404) else getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        if isinstance(codes, str):
            code = codes
    if isinstance(detail, dict) and set(detail) == {"detail"}:
        message = str(detail["detail"])
        body = {"code": code, "message": message}
    else:
        body = {"code": "invalid", "message": "Invalid input.", "errors": detail}
    response.data = body
    return response
