"""Request glue shared by blueprints: SSO cookie, shared login flow, error pages, security headers."""
