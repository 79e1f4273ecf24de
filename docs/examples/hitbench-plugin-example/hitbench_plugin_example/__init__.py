"""Example third-party hitbench method, registered through the ``hitbench.methods`` entry point."""
