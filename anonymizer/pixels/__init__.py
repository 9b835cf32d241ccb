"""Pixel data: burned-in text found, cleaned, or the file failed (PS3.15 Clean Pixel Data)."""
