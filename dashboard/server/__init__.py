"""What the server adds around the pages: its head and static-file middlewares and the operator's numbers."""
