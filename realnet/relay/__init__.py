"""The SMTP relay: the receiving side (dialogue, policy checks, the durable 250), the
spool, the queue manager (attempts, retries, fallback, DSNs), the SMTP client, traces."""
