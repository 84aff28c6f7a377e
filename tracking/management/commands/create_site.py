import json

from django.core.management.base import BaseCommand

from tracking import services


class Command(BaseCommand):
    help = "Create a site with a write key, a secret key and a signing secret."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true", help="print the keys as one JSON object")

    def handle(self, *args, name: str, json: bool = False, **options):
        site, write_key = services.site_create(name=name)
        secret = services.secret_key_issue(site=site, label="create_site")
        data = {
            "id": site.pk,
            "name": site.name,
            "write_key": write_key.key,
            "secret_key": secret.key,
            "signing_secret": site.signing_secret,
        }
        if json:
            self.stdout.write(_json_dumps(data))
        else:
            for key, value in data.items():
                self.stdout.write(f"{key:15} {value}")
            self.stdout.write("The secret key is shown only now; store it safely.")


def _json_dumps(data: dict) -> str:
    return json.dumps(data)
