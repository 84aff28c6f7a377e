"""Management API: sites visible to the caller (secret key: its own; user: memberships)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers

from tracking.api_base import ErrorSerializer, sites_for_request
from tracking.models import Site


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = [
            "id",
            "name",
            "time_zone",
            "session_timeout_minutes",
            "anonymous_retention_days",
            "cart_abandon_minutes",
            "only_signed_data",
            "allowed_origins",
        ]


@extend_schema(responses={200: SiteSerializer(many=True), 401: ErrorSerializer, 404: ErrorSerializer})
class SiteListApi(generics.ListAPIView):
    serializer_class = SiteSerializer

    def get_queryset(self):
        return sites_for_request(self.request)


@extend_schema(responses={200: SiteSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
class SiteDetailApi(generics.RetrieveAPIView):
    serializer_class = SiteSerializer

    def get_object(self):
        return get_object_or_404(sites_for_request(self.request), pk=self.kwargs["site_id"])


urlpatterns = [
    path("sites", SiteListApi.as_view(), name="api-sites"),
    path("sites/<int:site_id>", SiteDetailApi.as_view(), name="api-site"),
]
