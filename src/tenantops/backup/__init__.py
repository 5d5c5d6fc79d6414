"""Backup and restore of the control plane: its database and the files in its data directory.

A backup is one ``.tar.gz``: a ``manifest.json`` (schema revision, every
table's columns, row count and SHA-256, every file's SHA-256), one JSON-lines
file per table, the data directory's files, and the local GitOps repository as
a git bundle. It is logical, so a backup of the embedded SQLite database
restores into PostgreSQL and the reverse. See docs/decisions/0032.
"""
