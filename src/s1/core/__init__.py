"""The small core every stage shares: errors, thinking formats, budget forcing, models, run directories."""
