"""Artifact removal, quality control and artifact synthesis (one file per method)."""
