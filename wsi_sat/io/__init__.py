"""Image and slide readers."""
