def current_site(request):
    """The marketer UI's site (set by views under /app/s/<id>/) and the sites to switch to."""
    site = getattr(request, "footprint_site", None)
    sites = getattr(request, "footprint_sites", None)
    return {"current_site": site, "user_sites": sites}
