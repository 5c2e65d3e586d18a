"""Speech from call templates: a sandboxed subset of Django's template language.

Partner staff write the lines and contacts' data fills them in, so every line is parsed
against an allow-list before anything renders: text, plain variables,
{% if %}/{% elif %}/{% else %} and a few text filters. The output is speech, not HTML, so
nothing is escaped.

The package, by topic: ``fields`` (the fields that render, their limits, labels and
errors), ``sandbox`` (the allow-list and the cache of parsed lines), ``lines`` (rendering
a line, the AI's instructions, a contact's context) and ``sentences`` (the units a call
voices). Import from ``templates.rendering``: its names are re-exported here.
"""

from __future__ import annotations

from templates.rendering.fields import ON_DEMAND_FIELDS as ON_DEMAND_FIELDS
from templates.rendering.fields import SPOKEN_FIELDS as SPOKEN_FIELDS
from templates.rendering.fields import TEXT_FIELDS as TEXT_FIELDS
from templates.rendering.fields import ContactLike as ContactLike
from templates.rendering.fields import LineTooLong as LineTooLong
from templates.rendering.fields import MissingVariable as MissingVariable
from templates.rendering.fields import TemplateProblem as TemplateProblem
from templates.rendering.fields import TemplateRenderError as TemplateRenderError
from templates.rendering.fields import field_label as field_label
from templates.rendering.fields import field_limit as field_limit
from templates.rendering.fields import length_problem as length_problem
from templates.rendering.lines import Instructions as Instructions
from templates.rendering.lines import contact_context as contact_context
from templates.rendering.lines import contact_reference as contact_reference
from templates.rendering.lines import context_values as context_values
from templates.rendering.lines import cut_at_sentence as cut_at_sentence
from templates.rendering.lines import render_instructions as render_instructions
from templates.rendering.lines import render_line as render_line
from templates.rendering.lines import render_line_to_fit as render_line_to_fit
from templates.rendering.lines import render_template as render_template
from templates.rendering.lines import required_variables as required_variables
from templates.rendering.lines import validate_text as validate_text
from templates.rendering.sandbox import ALLOWED_FILTERS as ALLOWED_FILTERS
from templates.rendering.sandbox import ALLOWED_TAGS as ALLOWED_TAGS
from templates.rendering.sandbox import CAMPAIGN_VARIABLES as CAMPAIGN_VARIABLES
from templates.rendering.sandbox import MAX_CONDITION_WORDS as MAX_CONDITION_WORDS
from templates.rendering.sandbox import MAX_FILTERS as MAX_FILTERS
from templates.rendering.sandbox import RESERVED_VARIABLES as RESERVED_VARIABLES
from templates.rendering.sandbox import _SandboxParser as _SandboxParser
from templates.rendering.sandbox import _scan as _scan
from templates.rendering.sandbox import _scans as _scans
from templates.rendering.sentences import (
    contact_independent_sentences as contact_independent_sentences,
)
from templates.rendering.sentences import contact_sentences as contact_sentences
from templates.rendering.sentences import is_contact_independent as is_contact_independent
from templates.rendering.sentences import sentences as sentences
from templates.rendering.sentences import spoken_sentences as spoken_sentences
