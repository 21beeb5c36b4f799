"""Qt widgets and workers only. No science here: everything is called from core/io/ai."""
