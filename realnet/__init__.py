"""mailgate's real side: the gateway chain as real SMTP, DNS and POP3 servers on loopback."""
