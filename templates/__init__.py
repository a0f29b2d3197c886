"""Jinja2 templates of the generated packages (package data; rendered by vision_factory.generator)."""
