"""Your application's own handlers: one module per handler, registered in ``config.toml``
(``factory = "handlers.my_module:MyHandler"``). novaconsole puts the config file's directory
first on ``sys.path``, so this package is found when you run ``novaconsole`` from here.

The three example handlers that ``config.toml`` and ``novaconsole demo`` run ship inside the
package, in :mod:`novaconsole.examples`: read them there, and copy one here to start your own.
"""
