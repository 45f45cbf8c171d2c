"""Gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

They are shipped in the package (service/gunicorn.conf.py, where they are explained) so
that an installed Pollbox has them too (`pollbox serve`). This file reads them from
wherever the `service` package is, without importing it: the master process must not
import the app.
"""

import importlib.util
import os

_settings = os.path.join(importlib.util.find_spec("service").submodule_search_locations[0],
                         "gunicorn.conf.py")
with open(_settings) as _file:
    exec(compile(_file.read(), _settings, "exec"))
