"""Contact imports: a CSV file of a million contacts imported the way an upload is, in a
process of its own (rows/s and that process's peak memory), and 100,000 contacts imported
by us and by django-import-export (the ratio).

The files are generated, the same every run: Spanish numbers written in the ways people
write them, about 1% of rows bad (numbers that are not numbers, an unknown time zone) and
about 2% repeating an earlier contact. BENCH_IMPORT_ROWS and BENCH_IMPORT_PEER_ROWS make
them smaller for a quick run.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction

from bench.harness import Figure
from campaigns.models import Campaign, Contact, ContactImport, Partner
from tests.processes import child_env

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
PEER_ROWS = int(os.environ.get("BENCH_IMPORT_PEER_ROWS", "100000"))
TARGET_ROWS_PER_SECOND = 20_000
TARGET_PEAK_MB = 500
TARGET_RATIO = 10


def run() -> list[Figure]:
    return [*background_import(), *against_django_import_export()]


# --- The files ----------------------------------------------------------------------------


def national_number(index: int) -> int:
    """A different Spanish number for every index below 10**8: a mobile (6…) mostly, a
    Madrid or Canary Islands landline (91…, 928…) now and then."""
    scrambled = (index * 48_271 + 12_345) % 10**8  # a permutation: 48,271 is prime to 10**8
    if index % 10 == 3:
        return 910_000_000 + scrambled % 10**7
    if index % 10 == 7:
        return 928_000_000 + scrambled % 10**6
    return 600_000_000 + scrambled


def written(number: int, rng: random.Random) -> str:
    """``number`` as people write it, in one of several ways."""
    digits = str(number)
    spaced = f"{digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
    return rng.choices(
        [
            digits,
            f"+34{digits}",
            f"+34 {spaced}",
            spaced,
            f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
            f"0034 {digits[:3]} {digits[3:6]} {digits[6:]}",
            f"(+34) {digits[:3]} {digits[3:6]} {digits[6:]}",
            f"34{digits}",
        ],
        weights=[30, 20, 15, 15, 10, 4, 4, 2],
    )[0]


def contact_rows(count: int, *, duplicates: bool = True) -> Iterator[list[str]]:
    """Rows of phone, external id, time zone, first name, city, amount."""
    rng = random.Random(6)  # noqa: S311 - reproducible sample data, not a secret
    names = ["María", "José", "Lucía", "Álvaro", "Begoña", "Íñigo", "Nuria", "Jesús"]
    cities = ["Madrid", "Las Palmas", "A Coruña", "Cádiz", "Logroño", "Ávila"]
    for index in range(count):
        number = national_number(index)
        external_id = f"CRM-{index:07d}"
        if duplicates and index > 100 and rng.random() < 0.02:
            # An earlier contact again: by external id (another number), or by number.
            earlier = rng.randrange(index - 100, index)
            if rng.random() < 0.5:
                external_id = f"CRM-{earlier:07d}"
            else:
                number, external_id = national_number(earlier), ""
        phone = written(number, rng)
        time_zone = ""
        roll = rng.random()
        if roll < 0.006:
            phone = rng.choice(["12345", "600 12", "no tiene", "+34 000 000 000"])
        elif roll < 0.008:
            phone = ""
        elif roll < 0.01:
            time_zone = "Madrid"  # not an IANA zone
        elif roll < 0.03:
            time_zone = "Europe/Madrid"
        yield [
            phone,
            external_id,
            time_zone,
            rng.choice(names),
            rng.choice(cities),
            f"{rng.randrange(1, 100_000) / 100:.2f}",
        ]


def write_spanish_excel_file(path: Path, count: int) -> None:
    """What Spanish Excel saves as CSV: semicolons, Windows-1252, CRLF, Spanish headers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="cp1252", newline="") as file:
        file.write("Teléfono;ID;Zona horaria;Nombre;Ciudad;Importe\r\n")
        for row in contact_rows(count):
            file.write(";".join(row) + "\r\n")


def write_plain_file(path: Path, count: int) -> None:
    """The file both importers read: UTF-8, commas, the model's field names. No row repeats
    another: django-import-export cannot merge two rows of one batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("phone,external_id,time_zone,first_name,city,amount\n")
        for row in contact_rows(count, duplicates=False):
            file.write(",".join(row) + "\n")


def make_campaign(name: str) -> Campaign:
    partner, _created = Partner.objects.get_or_create(name="Imports")
    return Campaign.objects.create(partner=partner, name=name)


# --- A million rows in the background ----------------------------------------------------


def background_import() -> list[Figure]:
    path = Path(settings.MEDIA_ROOT) / "imports" / "bench" / f"contacts-{ROWS}.csv"
    started = time.perf_counter()
    write_spanish_excel_file(path, ROWS)
    generated = time.perf_counter() - started
    contact_import = ContactImport.objects.create(
        campaign=make_campaign("Background import"),
        file=str(path.relative_to(settings.MEDIA_ROOT)),
        file_name=path.name,
    )
    # The worker's part, in a process of its own so that its peak memory is the import's.
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from bench.imports import import_in_this_process; "
            f"import_in_this_process({contact_import.pk})",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=child_env(),
        stdout=subprocess.PIPE,
    )
    output = process.stdout.read() if process.stdout else b""
    if process.wait() != 0:
        raise RuntimeError(f"the import process failed ({process.returncode})")
    done = json.loads(output.splitlines()[-1])  # after any log lines
    seconds = done["seconds"]
    contact_import.refresh_from_db()
    peak_mb = done["peak_kib"] / 1024
    rate = ROWS / seconds
    return [
        Figure("imports.file_mb", round(path.stat().st_size / 2**20, 1), "MB", "cp1252, ;"),
        Figure("imports.file_generation_s", round(generated, 1), "s", "not part of the import"),
        Figure("imports.rows", contact_import.total_rows or 0, "rows", contact_import.state),
        Figure("imports.created", contact_import.created_count, "contacts"),
        Figure("imports.merged", contact_import.merged_count, "rows", "repeated contacts"),
        Figure("imports.rejected", contact_import.error_count, "rows", "bad rows"),
        Figure("imports.seconds", round(seconds, 1), "s", "run_import, file to contacts"),
        Figure(
            "imports.rows_per_second",
            round(rate),
            "rows/s",
            f"target >= {TARGET_ROWS_PER_SECOND:,}",
        ),
        Figure("imports.peak_rss_mb", round(peak_mb), "MB", f"target < {TARGET_PEAK_MB}"),
    ]


def import_in_this_process(contact_import_id: int) -> None:
    """The child's part: run the import as the worker's task would, print the time."""
    from campaigns.imports import run_import

    started = time.perf_counter()
    contact_import = run_import(contact_import_id=contact_import_id)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "state": contact_import.state, "peak_kib": _peak_kib()}))


def _peak_kib() -> int:
    """This process's own peak resident memory, in KiB.

    Not the ru_maxrss its parent gets from wait4: Python starts a child with vfork, so
    the child's maximum includes the parent's size before exec (a 600 MB parent made a
    child doing nothing report 613 MB). The memory high-water mark of /proc/self/status
    starts again at exec. Elsewhere, the process's own maximum is the best there is."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(status.split("VmHWM:")[1].split()[0])


# --- Against django-import-export ---------------------------------------------------------


def against_django_import_export() -> list[Figure]:
    path = Path(settings.MEDIA_ROOT) / "imports" / "bench" / f"peer-{PEER_ROWS}.csv"
    write_plain_file(path, PEER_ROWS)

    from campaigns.imports import import_csv

    ours = make_campaign("Ours")
    started = time.perf_counter()
    with path.open("rb") as file:
        result = import_csv(campaign=ours, file=file)
    our_seconds = time.perf_counter() - started

    theirs = make_campaign("django-import-export")
    started = time.perf_counter()
    peer = import_with_django_import_export(campaign=theirs, path=path)
    their_seconds = time.perf_counter() - started
    their_contacts = Contact.objects.filter(campaign=theirs).count()

    return [
        Figure("imports.peer.rows", PEER_ROWS, "rows", "the same file for both"),
        Figure("imports.peer.ours_s", round(our_seconds, 2), "s", f"{result.created:,} created"),
        Figure(
            "imports.peer.django_import_export_s",
            round(their_seconds, 2),
            "s",
            f"{their_contacts:,} created, {peer['invalid']:,} invalid",
        ),
        Figure(
            "imports.peer.ratio",
            round(their_seconds / our_seconds, 1),
            "x faster",
            f"target >= {TARGET_RATIO}",
        ),
    ]


def import_with_django_import_export(*, campaign: Campaign, path: Path) -> dict[str, int]:
    """django-import-export at its fastest documented settings (bulk writes, no diffs,
    every existing contact loaded at once), checking and normalising the numbers as we do.
    """
    import tablib
    from django.core.exceptions import ValidationError
    from import_export import resources
    from import_export.instance_loaders import CachedInstanceLoader

    from campaigns.phones import normalize_phone, time_zones_for

    time_zones = zoneinfo.available_timezones()

    class ContactResource(resources.ModelResource):
        class Meta:
            model = Contact
            fields = ("campaign", "phone", "external_id", "time_zone", "variables")
            import_id_fields = ("phone",)
            instance_loader_class = CachedInstanceLoader
            use_bulk = True
            batch_size = 5_000
            skip_diff = True

        def get_queryset(self):
            return Contact.objects.filter(campaign=campaign)

        def before_import_row(self, row, **kwargs):
            phone = normalize_phone(row["phone"] or "", region=campaign.phone_region)
            if not row["time_zone"]:
                zones = time_zones_for(phone)
                row["time_zone"] = zones[0] if len(zones) == 1 else ""
            elif row["time_zone"] not in time_zones:
                raise ValidationError("not an IANA time zone")
            row["phone"] = phone
            row["campaign"] = campaign.pk
            variables = {key: row[key] for key in ("first_name", "city", "amount") if row[key]}
            row["variables"] = json.dumps(variables, ensure_ascii=False)

    dataset = tablib.Dataset().load(path.read_text(encoding="utf-8"), format="csv")
    with transaction.atomic():
        result = ContactResource().import_data(dataset, dry_run=False, raise_errors=False)
    if result.has_errors():
        raise RuntimeError(f"django-import-export failed: {result.base_errors}")
    return {"invalid": len(result.invalid_rows)}
