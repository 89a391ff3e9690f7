"""WSGI entry point for production servers: ``gunicorn service.wsgi:app -c gunicorn.conf.py``.

Configuration comes from the ``HCC_CDS_*`` environment variables (service-contract.md §7) through
``production_settings`` (auth ``required`` unless ``HCC_CDS_AUTH`` says otherwise, then ``HCC_CDS_PUBLIC_URL`` is
required; no embedded demo patients). A bad value exits with status 3, which makes gunicorn's master stop instead
of restarting workers forever (gunicorn.conf.py normally reports it first).
"""

from __future__ import annotations

from service import create_app, prepare_process
from service.config import env_or_exit, production_settings

app = create_app(env_or_exit(production_settings, status=3))
prepare_process()
