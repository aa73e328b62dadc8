"""Packet sources -> packet batches (pcap, pcapng, live), and the link/IP/L4 decode kernel."""
