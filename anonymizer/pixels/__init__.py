"""Pixel data: decoding frames for display and blanking regions of them."""
