"""Readers, validation, preprocessing, augmentation and synthetic generators."""
