"""The trio consumer runtime (scanner, manager, workers, lease extender); see issue 4."""
