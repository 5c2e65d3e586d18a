"""The call list's date drill-down, at the cost of an indexed MIN and MAX.

Django's ``date_hierarchy`` finds the years, months or days that have calls with a SELECT
DISTINCT over every call in range: with hundreds of thousands of calls, the slowest part of
the page. This offers every period between the first and the last call in range instead
(a campaign-less day is offered too, and lists nothing), in Django's own template.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import template
from django.contrib.admin.views.main import ChangeList
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.text import capfirst
from django.utils.translation import gettext as _

register = template.Library()


@register.inclusion_tag("admin/date_hierarchy.html")
def call_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    """Django's ``date_hierarchy`` context for ``cl``, its periods read from the first
    and the last call in range."""
    field = cl.date_hierarchy
    year = cl.params.get(f"{field}__year")
    month = cl.params.get(f"{field}__month")
    day = cl.params.get(f"{field}__day")

    def link(filters: dict[str, Any]) -> str:
        return cl.get_query_string(filters, [f"{field}__"])

    def month_title(date: datetime.date) -> str:
        return capfirst(date_format(date, "YEAR_MONTH_FORMAT"))

    def day_title(date: datetime.date) -> str:
        return capfirst(date_format(date, "MONTH_DAY_FORMAT"))

    if year and month and day:
        chosen = datetime.date(int(year), int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({f"{field}__year": year, f"{field}__month": month}),
                "title": month_title(chosen),
            },
            "choices": [{"title": day_title(chosen)}],
        }
    # cl.queryset is already narrowed to the chosen year or month.
    bounds = cl.queryset.aggregate(first=Min(field), last=Max(field))
    if bounds["first"] is None:
        return {"show": True, "back": None, "choices": []}
    first, last = (timezone.localtime(bounds[end]).date() for end in ("first", "last"))
    if not year and first.year == last.year:
        year = first.year
        if first.month == last.month:
            month = first.month
    if year and month:
        return {
            "show": True,
            "back": {"link": link({f"{field}__year": year}), "title": str(year)},
            "choices": [
                {
                    "link": link(
                        {
                            f"{field}__year": year,
                            f"{field}__month": month,
                            f"{field}__day": date.day,
                        }
                    ),
                    "title": day_title(date),
                }
                for date in (
                    first + datetime.timedelta(days=n) for n in range((last - first).days + 1)
                )
            ],
        }
    if year:
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {
                    "link": link({f"{field}__year": year, f"{field}__month": number}),
                    "title": month_title(datetime.date(int(year), number, 1)),
                }
                for number in range(first.month, last.month + 1)
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({f"{field}__year": str(number)}), "title": str(number)}
            for number in range(first.year, last.year + 1)
        ],
    }
