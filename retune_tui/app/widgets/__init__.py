"""The app's widgets: the call tree, the lanes and their worker, the problem bar, the panes."""
