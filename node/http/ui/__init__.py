"""The web UI: server-rendered pages, their assets, and the pieces they draw."""
