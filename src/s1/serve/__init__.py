"""The OpenAI-compatible server (`s1 serve`): app.py assembles it; docs/design.md, "Serving", maps the modules."""
