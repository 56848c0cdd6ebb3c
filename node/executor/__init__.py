"""Recipes to DAGs to plans to executed steps, ending in signed provenance."""
