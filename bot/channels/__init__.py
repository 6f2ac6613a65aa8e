"""Platform I/O: everything that talks to Facebook, Instagram or X lives here."""
