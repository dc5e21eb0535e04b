"""Output writers; every final file is written to a temporary name and renamed into place."""
