"""The OpenAI adapter: the only package that imports the openai SDK.

`stream_reply` asks the model for the next line of a live call, handing each sentence to
the caller as soon as it is complete, and returns what the model said and did (its tool
calls, validated). A reply of tool calls alone (an answer recorded, a callback scheduled)
gets the tools' results sent back, and the model's continuation is spoken in the same
turn. `extract_outcome` turns a finished call's transcript into the template's structured
outcome. Settings are read at call time; failures raise `ConversationUnavailable` when a
retry may help and `ConversationRejected` when it cannot. Nothing here retries a failed
reply: a live caller is waiting, so the webhook decides.

Models differ in the parameters they take (`model_traits`, by name): the original gpt-4
has no JSON mode; reasoning models (o-series, gpt-5) take `max_completion_tokens`, which
also bounds their reasoning, no temperature but the default, and a `reasoning_effort`.
Names are not a contract, so a 400 refusing one of those parameters is also learnt from
(`_adapt`): the request is sent again once without it, and the server's model keeps the
adaptation for the process's life.

The package is the adapter; its modules by topic: `base` (errors, values returned),
`replies` (a live call's reply), `tool_calls` (the model's tool calls checked),
`extraction` (a finished call's outcome), `models` (what each model takes, and what its
server taught), `probing` (`probe_model`), `client` (the SDK's clients and errors). The
agent's prompt and tool catalogue are `calls.agent`'s; they are re-exported here, as the
names this module always had.
"""

from __future__ import annotations

from calls.agent import CONTACT_RECORD_END as CONTACT_RECORD_END
from calls.agent import CONTACT_RECORD_START as CONTACT_RECORD_START
from calls.agent import CONTACT_VALUE_MAX_CHARS as CONTACT_VALUE_MAX_CHARS
from calls.agent import TOOLS as TOOLS
from calls.agent import answer_fields as answer_fields
from calls.agent import contact_message as contact_message
from calls.agent import system_prompt as system_prompt
from calls.conversation.base import CHARS_PER_TOKEN as CHARS_PER_TOKEN
from calls.conversation.base import REASONING_EFFORTS as REASONING_EFFORTS
from calls.conversation.base import TOKEN_PARAMETERS as TOKEN_PARAMETERS
from calls.conversation.base import Action as Action
from calls.conversation.base import ConversationNotConfigured as ConversationNotConfigured
from calls.conversation.base import ConversationRejected as ConversationRejected
from calls.conversation.base import ConversationUnavailable as ConversationUnavailable
from calls.conversation.base import Extraction as Extraction
from calls.conversation.base import Reply as Reply
from calls.conversation.base import is_configured as is_configured
from calls.conversation.client import _async_client as _async_client
from calls.conversation.client import tls_context as tls_context
from calls.conversation.extraction import extract_outcome as extract_outcome
from calls.conversation.models import _LEARNT as _LEARNT
from calls.conversation.models import ModelTraits as ModelTraits
from calls.conversation.models import model_traits as model_traits
from calls.conversation.probing import ModelProbe as ModelProbe
from calls.conversation.probing import RefusedParameter as RefusedParameter
from calls.conversation.probing import probe_model as probe_model
from calls.conversation.replies import stream_reply as stream_reply
from calls.sentences import SentenceSplitter as SentenceSplitter
