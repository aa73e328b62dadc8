"""Protocol identification and one dissector module per protocol."""
