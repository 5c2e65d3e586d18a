"""The audit trail: an append-only, hash-chained record of every decision about a contact
and every staff or partner action, readable and exportable, editable by nobody.

It sits below every other app and knows none of them: partners, users and objects are
named by id and text, so deleting anything leaves the trail whole.
"""
