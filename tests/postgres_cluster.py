"""pytest plugin: a throwaway PostgreSQL cluster (filled in with the PostgreSQL store)."""
