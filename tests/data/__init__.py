"""Reference data for the end-to-end tests, each with the script that made it."""
