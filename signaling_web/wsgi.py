"""WSGI entry point for gunicorn: `gunicorn -k gevent signaling_web.wsgi:app`."""

from signaling_web import create_app

app = create_app()
