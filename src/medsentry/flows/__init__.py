"""Flow table, TCP stream reassembly and flow features."""
