"""Pixel data: finding text burned into decoded frames."""
