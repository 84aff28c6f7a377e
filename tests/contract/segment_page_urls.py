"""URLs for the browser contract test: Footprint's own, plus a shop page that loads
Segment's browser library (from Footprint's static files) the way a site would."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import urlpatterns as footprint_urlpatterns

# The query string carries the write key, the Footprint origin (as the library's
# cdnURL, so it fetches its settings there) and optional Segment.io options as JSON.
SHOP_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>Shop</title></head>
<body>
<h1>Shoes</h1>
<script>
  const params = new URLSearchParams(location.search);
  const footprint = params.get("footprint");
  const script = document.createElement("script");
  script.src = footprint + "/static/vendor/segment/index.js";
  script.onload = async () => {
    try {
      const segmentio = JSON.parse(params.get("segmentio") || "{}");
      const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
        { writeKey: params.get("key"), cdnURL: footprint },
        { integrations: { "Segment.io": segmentio } },
      );
      await analytics.identify("shopper-1", { email: "shopper@example.com", plan: "gold" });
      await analytics.track("Product Viewed", { sku: "SHOE-9", price: 89.5 });
      await analytics.page("Shop", "Shoes", { section: "new" });
      window.segmentDone = analytics.user().anonymousId();
    } catch (error) {
      window.segmentError = String(error);
    }
  };
  document.head.appendChild(script);
</script>
</body>
</html>
"""


def shop_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(SHOP_PAGE)


urlpatterns = [path("shop/", shop_page), *footprint_urlpatterns]
