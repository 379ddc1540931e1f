"""Faust web views: the job API (client role) and health (every worker)."""
