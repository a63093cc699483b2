"""Entry point of the worker and Flower processes: `celery -A media_tasks.app worker|flower`.

The process's Settings are built here, once, from the environment; nothing else imports this
module (the web tier builds its own app with media_tasks.celery_app.create_celery_app).
"""

from media_tasks.celery_app import create_celery_app, run_as_worker
from settings import load_settings

app = create_celery_app(load_settings())
run_as_worker(app)
