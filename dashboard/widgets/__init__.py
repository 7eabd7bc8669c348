"""Custom widgets of the dashboard."""
