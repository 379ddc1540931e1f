"""Faust agents: compute (server role), persist and reconcile (client role)."""
