"""Front ends: the command line (``cli/``), the web app (``web/``) and the Jupyter panel (``notebook.py``).

They are thin layers over the library and may use every room below them; nothing below imports them.
"""
