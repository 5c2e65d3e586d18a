"""Data-subject rights and retention: everything held about a phone number, exported or
erased, and what has outlived its partner's retention deleted."""
