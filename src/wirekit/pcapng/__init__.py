"""Sans-IO pcap/pcapng codec."""
