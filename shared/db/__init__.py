"""PostgreSQL access shared by the services: connection pools and schema migrations."""
