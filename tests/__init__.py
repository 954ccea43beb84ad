"""
Tests for osscallback.
"""
