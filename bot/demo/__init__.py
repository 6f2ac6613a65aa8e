"""Local stand-ins used by the demo and the tests (a mail catcher, fake servers)."""
