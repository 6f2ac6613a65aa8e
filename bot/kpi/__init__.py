"""Response-time KPIs: events recorded by the stages, and their aggregation."""
