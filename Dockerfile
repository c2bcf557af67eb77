# One image for every computewatch process: the compose file runs it as `migrate`, `worker`,
# `simulate` and `dashboard` by changing the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group computewatch
WORKDIR /app

# Dependencies in their own layer (an empty stand-in package carries pyproject's dependency
# list, and the [otlp] and [metrics] extras for `ingest otlp` and `worker --metrics-port`), so a
# code change does not reinstall chdb, pyarrow and streamlit. Every dependency ships manylinux
# wheels for CPython 3.11: no compiler needed.
COPY pyproject.toml ./
RUN mkdir pipeline && touch pipeline/__init__.py \
    && pip install ".[otlp,metrics]" \
    && pip uninstall --yes computewatch \
    && rm -rf pipeline build computewatch.egg-info

# The project. Editable, so `pipeline` stays at /app/pipeline and finds what sits next to it in
# the source tree (schemas/clickhouse for `migrate`, dashboards/ for `dashboard`), which a plain
# site-packages install would leave behind. Sources stay root-owned; the user may write only in
# /app and /app/data (the embedded ClickHouse, and Faust's state in data/worker).
COPY . .
RUN pip install --no-deps --editable . \
    && mkdir -p data \
    && chown computewatch:computewatch /app /app/data

USER computewatch
EXPOSE 8501
CMD ["computewatch", "--help"]
