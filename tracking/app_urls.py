from django.contrib.auth import views as auth_views
from django.urls import path

from tracking import app_views

# Included by config/urls.py under /app/ in the "app" namespace, beside other apps' pages.
page_urls = [
    path("", app_views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("s/<int:site_id>/settings/", app_views.site_settings, name="settings"),
    path("s/<int:site_id>/segments/", app_views.section, {"name": "segments"}, name="segments"),
    path("s/<int:site_id>/funnels/", app_views.section, {"name": "funnels"}, name="funnels"),
    path("s/<int:site_id>/metrics/", app_views.section, {"name": "metrics"}, name="metrics"),
    path("s/<int:site_id>/campaigns/", app_views.section, {"name": "campaigns"}, name="campaigns"),
]
