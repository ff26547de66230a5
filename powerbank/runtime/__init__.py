"""Running a node: serving in one process, the garbage-collection policy."""
