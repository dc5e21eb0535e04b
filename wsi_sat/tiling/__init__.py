"""Tissue detection and the tile grid."""
