"""Management API for people (DESIGN "Management API"): list and search, detail,
lookup by identity key, export, delete. Every view is site-scoped by SiteScopedMixin;
a person of another site is a 404 like a person that does not exist."""

from __future__ import annotations

from django.urls import path, register_converter
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from profiles import selectors, services
from profiles.models import Identity, Profile
from tracking.access import can
from tracking.api_base import ErrorSerializer, SiteScopedMixin
from tracking.ingest.profile_tokens import ProfileIdConverter
from tracking.keyset import Cursor, InvalidCursor
from tracking.models import Membership, Site

# --- output shapes ---------------------------------------------------------------------


class IdentitySerializer(serializers.Serializer):
    kind = serializers.CharField()
    key = serializers.CharField()
    created_at = serializers.DateTimeField()


class CompanySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField(help_text="the site's group id")
    properties = serializers.JSONField()


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    session_id = serializers.IntegerField(allow_null=True)
    message_id = serializers.CharField(allow_null=True)
    properties = serializers.JSONField()
    context = serializers.JSONField()


class SessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    started_at = serializers.DateTimeField()
    last_event_at = serializers.DateTimeField()
    event_count = serializers.IntegerField()
    context = serializers.JSONField()


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="our profile id (stable; merged ids resolve to it)")
    name = serializers.CharField(source="display_name")
    is_identified = serializers.BooleanField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    properties = serializers.JSONField()
    identities = IdentitySerializer(many=True, source="identities.all")


class PeoplePageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="people matching, counted up to 10,000")
    count_capped = serializers.BooleanField(help_text="true when more than `count` match")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = PersonSerializer(many=True)


class PersonDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    is_identified = serializers.BooleanField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    properties = serializers.JSONField()
    identities = IdentitySerializer(many=True)
    companies = CompanySerializer(many=True)
    merged_profile_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="ids merged into this person; they resolve here"
    )
    session_count = serializers.IntegerField()
    event_count = serializers.IntegerField()
    recent_events = EventSerializer(many=True, help_text="the newest events, newest first")


class MergeRecordSerializer(serializers.Serializer):
    source_id = serializers.IntegerField()
    target_id = serializers.IntegerField()
    reason = serializers.CharField()
    identities = serializers.JSONField()
    merged_at = serializers.DateTimeField()


class MergedProfileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    is_identified = serializers.BooleanField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    properties = serializers.JSONField(help_text="as at the merge (the merged person's won where both had a key)")


class PersonExportSerializer(serializers.Serializer):
    """Documents ``profiles.services.profile_export``; the view returns its dict as is."""

    id = serializers.IntegerField()
    site_id = serializers.IntegerField()
    exported_at = serializers.DateTimeField()
    is_identified = serializers.BooleanField()
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    properties = serializers.JSONField()
    merged_profile_ids = serializers.ListField(child=serializers.IntegerField())
    merged_profiles = MergedProfileSerializer(many=True, help_text="the profiles merged into this person")
    identities = IdentitySerializer(many=True)
    companies = CompanySerializer(many=True)
    sessions = SessionSerializer(many=True)
    merges = MergeRecordSerializer(many=True)
    events = EventSerializer(many=True, help_text="every event, oldest first")


# --- input shapes ----------------------------------------------------------------------


class PeopleQuerySerializer(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=255,
        default="",
        help_text="search: an id or email prefix (any case), a profile id, or `name=value` for a property",
    )
    sort = serializers.ChoiceField(
        choices=list(selectors.PEOPLE_SORTS),
        required=False,
        default=selectors.DEFAULT_SORT,
        help_text="`-` sorts newest first",
    )
    cursor = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="from a `next` or `previous` link"
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=200, default=50, help_text="people per page"
    )

    segment = serializers.IntegerField(
        required=False, help_text="a segment id (not available until segments exist: 400)"
    )

    def validate(self, attrs: dict) -> dict:
        # Refused rather than ignored: a client asking for a segment must never get everyone.
        # Read from the query itself: the field skips a blank `segment=` (or a repeated one
        # ending blank) as if it were absent.
        if "segment" in self.initial_data:
            raise serializers.ValidationError({"segment": ["Filtering people by segment is not available yet."]})
        return attrs

    def validate_cursor(self, value: str) -> Cursor | None:
        try:
            return Cursor.parse(value)
        except InvalidCursor as exc:
            raise serializers.ValidationError(str(exc)) from exc


class ByIdentityQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=[*Identity.Kind.values, selectors.PROFILE_KIND], required=False, allow_blank=True
    )


SITE_PARAMETER = OpenApiParameter(
    "site",
    OpenApiTypes.INT,
    description="Logged-in session: which of your sites (required). Secret key: optional; "
    "when given it must be the key's site.",
)
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="no such person on this site")
UNAUTHENTICATED = OpenApiResponse(ErrorSerializer, description="no secret key or session, or a revoked key")
BAD_INPUT = OpenApiResponse(ErrorSerializer, description="a bad parameter, or a session that names no `site`")
FORGET_RESPONSES = {
    204: None,
    400: BAD_INPUT,
    401: UNAUTHENTICATED,
    403: ErrorSerializer,
    404: NOT_FOUND,
    503: OpenApiResponse(ErrorSerializer, description="calls accepted before are still being stored; retry"),
}
PERSON_ID = OpenApiParameter(
    "profile_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=ProfileIdConverter.regex,
    description="profile id, or the token a tracking answer returned for it (`17.oi9RdeFd88iwCVli`);"
    " merged ids resolve",
)


def person_detail_data(site: Site, profile: Profile) -> dict:
    detail = selectors.person_detail(site=site, profile=profile, events_limit=50)
    return {
        "id": profile.pk,
        "name": profile.display_name,
        "is_identified": profile.is_identified,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "properties": profile.properties,
        "identities": detail.identities,
        "companies": detail.companies,
        "merged_profile_ids": detail.profile_ids[1:],
        "session_count": detail.session_count,
        "event_count": detail.event_count,
        "recent_events": detail.events.items,
    }


class PersonLookupMixin(SiteScopedMixin):
    def get_person(self) -> Profile:
        profile = selectors.profile_get(site=self.site, profile_id=self.kwargs["profile_id"])
        if profile is None:
            raise NotFound("No such person.")
        return profile

    def check_may_manage_people(self) -> None:
        """Export and delete: the site's secret key, or the admin role on the site."""
        if isinstance(self.request.auth, Site):
            return
        if not can(self.request.user, self.site, Membership.Role.ADMIN):
            raise PermissionDenied("Exporting or deleting a person needs the site's secret key or the admin role.")


class PeopleListApi(SiteScopedMixin, APIView):
    @extend_schema(
        operation_id="people_list",
        tags=["people"],
        summary="List and search people",
        description=(
            "Live people of the site, paged by cursor (follow `next` / `previous`). `q` matches "
            "any identity key or the `email` property by case-insensitive prefix, a profile id, "
            "or a property value when written `name=value` (`plan=pro`, `address.city=Berlin`, "
            "`age=30` matches 30 and \"30\"). `segment=<id>` answers 400 until segments exist."
        ),
        parameters=[PeopleQuerySerializer, SITE_PARAMETER],
        responses={200: PeoplePageSerializer, 400: BAD_INPUT, 401: UNAUTHENTICATED, 404: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        params = PeopleQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        args = params.validated_data
        site = self.site
        matches = selectors.text_matches(site=site, q=args["q"])  # one probe for the page and its count
        page = selectors.people_page(
            site=site, q=args["q"], sort=args["sort"], cursor=args["cursor"], limit=args["limit"], matches=matches
        )
        first_page = page if args["cursor"] is None else None  # one after a cursor may be past the end
        count, capped = selectors.people_count(site=site, q=args["q"], matches=matches, page=first_page)
        url = request.build_absolute_uri()
        return Response(
            {
                "count": count,
                "count_capped": capped,
                "next": replace_query_param(url, "cursor", page.next.encode()) if page.next else None,
                "previous": (
                    replace_query_param(url, "cursor", page.previous.encode())
                    if page.previous
                    else None
                ),
                "results": PersonSerializer(page.items, many=True).data,
            }
        )


def forget_response(site: Site, profile: Profile) -> Response:
    try:
        services.profile_forget(site=site, profile=profile)
    except services.QueueBusy as exc:
        body = {"code": "busy", "message": str(exc)}
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "60"})
    return Response(status=status.HTTP_204_NO_CONTENT)


class PersonDetailApi(PersonLookupMixin, APIView):
    heavy_methods = ("DELETE",)  # tracking.throttling: a lower rate limit of their own

    @extend_schema(
        operation_id="people_retrieve",
        tags=["people"],
        summary="One person",
        description="Properties, identities, companies and the 50 newest events. An id that was "
        "merged into another person answers with that person.",
        parameters=[SITE_PARAMETER, PERSON_ID],
        responses={200: PersonDetailSerializer, 400: BAD_INPUT, 401: UNAUTHENTICATED, 404: NOT_FOUND},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        profile = self.get_person()
        return Response(PersonDetailSerializer(person_detail_data(self.site, profile)).data)

    @extend_schema(
        operation_id="people_destroy",
        tags=["people"],
        summary="Forget a person",
        description="Right to be forgotten: deletes the person's events, sessions, identities, "
        "company memberships and merge records, the profile and every id merged into it, and "
        "their calls still queued or set aside as failed. "
        "Irreversible. Needs the secret key or the admin role on the site.",
        parameters=[SITE_PARAMETER, PERSON_ID],
        responses=FORGET_RESPONSES,
    )
    def delete(self, request: Request, profile_id: int) -> Response:
        self.check_may_manage_people()
        return forget_response(self.site, self.get_person())


class PersonExportApi(PersonLookupMixin, APIView):
    heavy_methods = ("GET",)

    @extend_schema(
        operation_id="people_export",
        tags=["people"],
        summary="Export a person",
        description="Everything held about the person: properties (and those of the profiles "
        "merged into theirs), identities, companies, sessions, merge records and every event "
        "(oldest first). Needs the secret key or the admin role on the site.",
        parameters=[SITE_PARAMETER, PERSON_ID],
        responses={200: PersonExportSerializer, 400: BAD_INPUT, 401: UNAUTHENTICATED, 403: ErrorSerializer, 404: NOT_FOUND},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        self.check_may_manage_people()
        profile = self.get_person()
        return Response(services.profile_export(site=self.site, profile=profile))


class PersonByIdentityApi(PersonLookupMixin, APIView):
    heavy_methods = ("DELETE",)

    @extend_schema(
        operation_id="people_by_identity",
        tags=["people"],
        summary="One person, by any identity key",
        description="The person an identity key names (user id, email, anonymous id, cookie, "
        "external id). When the same key exists under several kinds, `kind` picks one; "
        "otherwise user, email, external, cookie, anonymous win in that order. "
        "`kind=profile` reads the key as our profile id. Same body as `GET /api/v1/people/<id>`.",
        parameters=[
            ByIdentityQuerySerializer,
            SITE_PARAMETER,
            OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH),
        ],
        responses={200: PersonDetailSerializer, 400: BAD_INPUT, 401: UNAUTHENTICATED, 404: NOT_FOUND},
    )
    def get(self, request: Request, key: str) -> Response:
        return Response(PersonDetailSerializer(person_detail_data(self.site, self.get_person())).data)

    @extend_schema(
        operation_id="people_by_identity_destroy",
        tags=["people"],
        summary="Forget a person, by any identity key",
        description="`DELETE /api/v1/people/<id>` for the person an identity key names (a request "
        "to be forgotten usually comes with an email or user id). `kind` as for the GET.",
        parameters=[
            ByIdentityQuerySerializer,
            SITE_PARAMETER,
            OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH),
        ],
        responses=FORGET_RESPONSES,
    )
    def delete(self, request: Request, key: str) -> Response:
        self.check_may_manage_people()
        return forget_response(self.site, self.get_person())

    def get_person(self) -> Profile:
        params = ByIdentityQuerySerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        profile = selectors.profile_by_identity(
            site=self.site, key=self.kwargs["key"], kind=params.validated_data.get("kind") or None
        )
        if profile is None:
            raise NotFound("No person has this identity.")
        return profile


register_converter(ProfileIdConverter, "profile")

urlpatterns = [
    path("people", PeopleListApi.as_view(), name="api-people"),
    path("people/by-identity/<path:key>", PersonByIdentityApi.as_view(), name="api-person-by-identity"),
    path("people/<profile:profile_id>", PersonDetailApi.as_view(), name="api-person"),
    path("people/<profile:profile_id>/export", PersonExportApi.as_view(), name="api-person-export"),
]
