"""The `instructrec` command line: thin faces over the library functions."""
