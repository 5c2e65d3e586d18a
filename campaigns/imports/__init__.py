"""Contact imports: a CSV file or JSON rows into a campaign. Every row is checked; good rows
are saved in batches, bad ones come back as RowErrors naming the row, field and value.

A row is the same person as an existing contact, or as an earlier row of the same file,
when it has the same external id, or else the same phone (what ``add_contact`` does): its
variables are merged into that contact and it counts as merged, so uploading a file again
creates nothing twice. A row whose external id is another phone's is rejected, since
merging it would drop its phone.

A row whose contact, once saved, lacks a variable the campaign's template needs (absent or
blank, as a line reads it) is kept and flagged: a RowWarning per missing variable, counted in
``flagged`` and ``missing_variables``. Eligibility refuses to call such a contact until it
has a value, against the template as it is then: the report says what the rows lacked when
they were saved.

CSV files:

- Encoding: UTF-8 with or without a byte order mark, or UTF-16 with one. A file that is not
  valid UTF-8 is read as Windows-1252, which Excel writes in Spain.
- Delimiter: whichever of ``,`` ``;`` tab ``|`` the header row uses most (``,`` on a tie);
  a first line ``sep=;``, which Excel understands, names it.
- The first row names the columns. The phone, time zone and external id columns may go by
  the names in COLUMN_ALIASES, compared ignoring case, accents, spaces and hyphens
  ("Teléfono", "phone number", "TEL"). So may the legal basis columns (``basis.py``):
  ``legal_basis`` (consent, customer, service; or consentimiento, cliente, servicio),
  ``consent_source``, ``consent_at``, ``consent_text``, ``consent_scope``,
  ``basis_expires_at``, ``basis_withdrawn_at`` (or the API's field names). A row that fills
  any of them names the kind and replaces the contact's basis; times are ISO 8601 dates or
  dates and times, read in the project's time zone without an offset. Every other column is
  a variable named by its header as written (stripped); empty cells are left out, and so are
  columns with no name.
- Rows are numbered as a spreadsheet shows them: the header is row 1, so the first contact
  is row 2; a quoted value over several lines is one row. JSON rows count from 1.
- Limits: MAX_COLUMNS columns, MAX_LINE_CHARS characters on a line and the csv module's
  field size limit (128 KiB) in a value: a row with a longer value is rejected, the rows
  after it are read. So is a row whose quote is never closed (the rest of the file would be
  one value): the lines after it are read as rows. A NUL character rejects the row it is in.
"""

# The package: runs.py (an import from start to end), decoding.py (a CSV file's lines), rows.py
# (each row checked), basis.py (a row's legal basis), storage.py (batches saved), base.py
# (what they share and report).

from campaigns.imports.base import ImportFileError as ImportFileError
from campaigns.imports.base import ImportResult as ImportResult
from campaigns.imports.base import RowError as RowError
from campaigns.imports.base import RowWarning as RowWarning
from campaigns.imports.decoding import COLUMN_ALIASES as COLUMN_ALIASES
from campaigns.imports.decoding import DELIMITERS as DELIMITERS
from campaigns.imports.decoding import MAX_COLUMNS as MAX_COLUMNS
from campaigns.imports.decoding import MAX_LINE_CHARS as MAX_LINE_CHARS
from campaigns.imports.runs import STALE_AFTER as STALE_AFTER
from campaigns.imports.runs import check_csv as check_csv
from campaigns.imports.runs import create_import as create_import
from campaigns.imports.runs import import_csv as import_csv
from campaigns.imports.runs import import_rows as import_rows
from campaigns.imports.runs import import_summary as import_summary
from campaigns.imports.runs import run_import as run_import
from campaigns.imports.storage import BATCH_SIZE as BATCH_SIZE
