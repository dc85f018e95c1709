"""The command line: one module per command (argument handling, printing, exit codes);
the work is done by the domain packages."""
