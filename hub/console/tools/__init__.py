"""Build-time helpers of the console (not imported at run time)."""
