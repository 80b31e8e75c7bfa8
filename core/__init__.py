"""Small shared plumbing: settings and paths used by every process kind."""
