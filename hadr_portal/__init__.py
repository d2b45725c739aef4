"""HADR Portal: a small team's dashboard for high availability and disaster recovery."""
