"""National suppression lists: reading the operators' files (``parsing``), importing a copy
and swapping it in (``loading``), and what campaigns need of them (``lookups``); import from
``campaigns.suppression``."""

from __future__ import annotations

from campaigns.suppression.loading import SuppressionImportError as SuppressionImportError
from campaigns.suppression.loading import create_copy_import as create_copy_import
from campaigns.suppression.loading import import_files as import_files
from campaigns.suppression.loading import load_copy as load_copy
from campaigns.suppression.loading import run_copy_import as run_copy_import
from campaigns.suppression.lookups import Listing as Listing
from campaigns.suppression.lookups import basis_exempts as basis_exempts
from campaigns.suppression.lookups import list_problems as list_problems
from campaigns.suppression.lookups import listed_condition as listed_condition
from campaigns.suppression.lookups import listings as listings
from campaigns.suppression.lookups import max_age_days as max_age_days
from campaigns.suppression.lookups import required_lists as required_lists
from campaigns.suppression.parsing import BAD_SAMPLES as BAD_SAMPLES
