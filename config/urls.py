from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tracking import api as tracking_api
from tracking import views as tracking_views
from tracking.app_urls import page_urls as tracking_pages

# Marketer pages of every app share the "app" namespace under /app/.
app_pages = (tracking_pages, "app")

urlpatterns = [
    path("healthz", tracking_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("app/", include(app_pages, namespace="app")),
    path("api/v1/", include(tracking_api.urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
