"""The store's Alembic migrations (see :mod:`novaconsole.store.schema`): ``env.py``, the
revision template and ``versions/``, shipped in the package."""
