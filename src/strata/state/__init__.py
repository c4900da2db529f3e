"""State operations that hold for every backend: documents, the write rules, backups, replication."""
