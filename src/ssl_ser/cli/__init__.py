"""Command-line interface (`ser`)."""
