"""The services a gateway host uses: DNS, POP3 and Maildir, antivirus, SPF/DKIM checks,
keys and passwords."""
