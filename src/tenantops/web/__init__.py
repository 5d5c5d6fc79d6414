"""The server-rendered web UI: local login, sessions with CSRF, and the KPI dashboard.

Pages call the same services as the JSON API with a ``Principal`` built from
the session exactly as one is built from a token, so one role table and one
tenant scope govern both.
"""
