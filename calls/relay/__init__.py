"""Twilio's ConversationRelay: a relay call's conversation over a WebSocket (``consumer``),
its messages (``protocol``), its turns (``session``) and what they write (``records``)."""
