"""The WSGI application: Django, with a lean middleware chain for the tracking API.

Every request under ``/v1/`` (the Segment endpoints, the tracker's config) authenticates
with a write key and answers JSON: sessions, users, CSRF, messages, frame options,
htmx and static files do nothing for it, yet they cost 17% of Django's CPU on a
``/v1/track`` call (0.38 → 0.32 ms measured in-process on bench data), the busiest
request Footprint serves. Those paths go through a handler whose chain is only
SecurityMiddleware and CommonMiddleware (which also sets Content-Length: without it
gunicorn answers chunked); everything else through the usual one.
"""

import os

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware

from config.memory import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

TRACKING_PREFIX = "/v1/"
TRACKING_URLCONF = "config.urls_tracking"  # the patterns under TRACKING_PREFIX only


class TrackingAPIHandler(WSGIHandler):
    """Django's WSGI handler (signals, connection handling, error responses) with only
    SecurityMiddleware and CommonMiddleware, in settings.MIDDLEWARE's order, resolving
    against the /v1/ URLconf alone."""

    def __call__(self, environ, start_response):
        # The body as a list: for any other iterable granian takes its iterator path,
        # which was 18% of a /v1/track call's time holding the GIL (py-spy --gil on
        # bench load); a list is written in one piece. A server does not close a list,
        # so the response is closed here (request_finished: connection upkeep), as
        # Django's own handler lets the server do after sending it.
        response = super().__call__(environ, start_response)
        if isinstance(response, list):
            return response
        try:
            return [b"".join(response)]
        finally:
            response.close()

    def get_response(self, request):
        request.urlconf = TRACKING_URLCONF
        return super().get_response(request)

    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        view = convert_exception_to_response(self._get_response)
        common = convert_exception_to_response(CommonMiddleware(view))
        self._middleware_chain = convert_exception_to_response(SecurityMiddleware(common))


django_application = get_wsgi_application()  # sets Django up first
tracking_application = TrackingAPIHandler()


def application(environ, start_response):
    if environ.get("PATH_INFO", "").startswith(TRACKING_PREFIX):
        return tracking_application(environ, start_response)
    return django_application(environ, start_response)


freeze_startup_objects()  # each web worker, once the application is loaded (config.memory)
