from django.urls import path

from profiles import api, views

# Marketer pages, mounted by config/urls.py in the "app" namespace under /app/.
page_urls = [
    path("s/<int:site_id>/people/", views.people, name="people"),
    path("s/<int:site_id>/people/<int:profile_id>/", views.person, name="person"),
    path("s/<int:site_id>/people/<int:profile_id>/events/", views.person_events, name="person-events"),
    path("s/<int:site_id>/people/<int:profile_id>/export/", views.person_export, name="person-export"),
    path("s/<int:site_id>/people/<int:profile_id>/delete/", views.person_forget, name="person-forget"),
    path("s/<int:site_id>/live/", views.live, name="live"),
    path("s/<int:site_id>/live/feed/", views.live_feed, name="live-feed"),
]

# Management API, mounted under /api/v1/.
api_urls = api.urlpatterns
