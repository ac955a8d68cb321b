"""The gallery on disk: every path (``layout``), the manifest (the commit point), centre tables, lineage, the
day's outputs and read-only queries."""
