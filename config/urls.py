from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from profiles.urls import api_urls as profiles_api
from profiles.urls import page_urls as profiles_pages
from tracking import api as tracking_api
from tracking import format_views as tracking_formats
from tracking import views as tracking_views
from tracking.app_urls import page_urls as tracking_pages

from . import urls_tracking

# A 400, 404 or 500 under /api/ answers in the API's JSON error shape.
handler400 = "tracking.api_base.bad_request"
handler404 = "tracking.api_base.page_not_found"
handler500 = "tracking.api_base.server_error"

# Marketer pages of every app share the "app" namespace under /app/.
app_pages = (tracking_pages + profiles_pages, "app")

urlpatterns = [
    path("healthz", tracking_views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin, the API docs).
    path("favicon.ico", tracking_views.favicon),
    path("admin/", admin.site.urls),
    path("app/", include(app_pages, namespace="app")),
    path("api/v1/", include(tracking_api.urlpatterns)),
    path("api/v1/", include(profiles_api)),
    *urls_tracking.urlpatterns,  # /v1/: the Segment tracking API and the tracker's config
    # The JS tracker: a URL carrying the write key (Tracktor's snippet), and older
    # versions' URLs (pasted snippets outlive releases) redirected to the current one.
    path("tracker/<str:write_key>.js", tracking_views.tracker_script, name="tracker-script"),
    # The script addresses of Tracktor's and Carma's snippets, so a page switches by its
    # host alone: Tracktor's .../scripts/<token>.js, Carma's .../carma-scripts/tracking.min.js
    # (and the bare .../tracking.min.js of its debug example; the tag carries the key).
    path("scripts/<str:write_key>.js", tracking_views.tracker_script),
    path("carma-scripts/tracking.min.js", tracking_views.tracker_script),
    path("tracking.min.js", tracking_views.tracker_script),
    re_path(r"^static/tracker/(?P<version>[0-9a-f]{12})/footprint\.js$", tracking_views.tracker_version),
    path("track", tracking_formats.track, name="track"),  # Tracardi (POST) and Tracktor (GET)
    path("set", tracking_formats.tracktor_set, name="tracktor-set"),
    path("alias", tracking_formats.tracktor_alias, name="tracktor-alias"),
    path("t/<str:customer>.rsa", tracking_formats.raptor_track, name="raptor"),
    # Raptor's own URLs put the customer at the root of a tracking host (t.<vendor>):
    # a host pointed at Footprint keeps them unchanged.
    path("<str:customer>.rsa", tracking_formats.raptor_track, name="raptor-root"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
