"""Where and how the network runs: device, precision and the fast inference path."""
