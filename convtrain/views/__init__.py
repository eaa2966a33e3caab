"""What a person reads: the trace (text, HTML), plots, and timings."""
