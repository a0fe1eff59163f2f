# One image for every Trainyard process (api, worker, scheduler, flower); docker-compose.yml picks the
# command. Installed editable from /app so configs/, migrations/ and examples/ stay beside the code.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAINYARD_DATA_DIR=/data \
    YOLO_CONFIG_DIR=/data/ultralytics \
    YOLO_OFFLINE=1

# OpenCV (pulled in by ultralytics) needs these shared libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY configs ./configs
COPY migrations ./migrations
COPY examples ./examples
RUN pip install -e '.[export]'  # the ONNX exporter's packages: nothing is pip-installed at run time

RUN useradd --create-home --uid 1000 trainyard && mkdir -p /data && chown trainyard /data
USER trainyard
VOLUME ["/data"]
EXPOSE 8000 5555

CMD ["trainyard", "api", "--host", "0.0.0.0", "--port", "8000"]
