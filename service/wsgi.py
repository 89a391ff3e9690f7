"""WSGI entry point for production servers: ``gunicorn service.wsgi:app -c gunicorn.conf.py``.

Configuration comes from the ``HCC_CDS_*`` environment variables (service-contract.md §7); this is the
production service (auth ``required`` unless ``HCC_CDS_AUTH`` says otherwise, no embedded demo patients).
"""

from __future__ import annotations

from service import create_app, prepare_process

app = create_app()
prepare_process()
