"""Notifications: Discord webhooks."""
