"""Editing: the per-face ``Editor`` (knobs, locks, replayable edits) and teaching knobs from labels.

It may use ``tlgan.axes``, ``tlgan.sampling``, ``tlgan.models`` and the package helpers.
"""
