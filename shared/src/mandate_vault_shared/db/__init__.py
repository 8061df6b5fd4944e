"""Database access shared by the services that touch the same PostgreSQL (or SQLite) database.

``schema`` holds the SQLAlchemy Core tables (the api's Alembic migrations create them);
``engine`` builds the async engine with the guide's pool metrics and query timings.
"""
