"""Redis: keys, connections, claims, notices, activities and the content, step and run indexes."""
