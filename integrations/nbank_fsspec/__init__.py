"""neurobank integration (in progress)."""
