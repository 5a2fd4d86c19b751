"""Database access: models, engines and sessions, migrations."""
