"""``novaconsole serve``: the console in a browser (textual-serve), behind a token.

Only :mod:`novaconsole.web.read_only` is free of textual-serve; the server itself needs the
``web`` extra (``pip install 'novaconsole[web]'``).
"""
