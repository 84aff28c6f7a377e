"""The URLs under /v1/: the Segment tracking API and the JS tracker's config.

The site's URLconf includes these, and the lean handler for ``/v1/`` (``config.wsgi``)
resolves against them alone: walking the whole site's patterns (admin, app pages, the
management API) before reaching these was a tenth of a ``/v1/track`` call's CPU.
"""

from django.urls import include, path

from tracking import segment_views
from tracking import views as tracking_views

# The lean handler looks its 404 up here: the site's page extends the app's layout, whose
# links this URLconf cannot reverse (an unknown /v1/ path answered 500).
handler404 = "tracking.api_base.page_not_found"
# What Django itself refuses (too many query fields) gets the tracking API's JSON shape.
handler400 = "tracking.api_base.bad_request"

urlpatterns = [
    path("v1/", include(segment_views.urlpatterns)),  # Segment tracking API
    path("v1/tracker-config/<str:write_key>", tracking_views.tracker_config, name="tracker-config"),
]
