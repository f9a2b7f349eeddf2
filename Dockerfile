# One image for the three services; the command picks the service.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY vigil ./vigil
RUN pip install --quiet . && useradd --system --uid 10001 vigil \
    && install -d -o vigil -g vigil /var/lib/vigil/anchors
COPY studies ./studies

USER vigil
ENV VIGIL_STUDY_DIR=/app/studies VIGIL_BIND_HOST=0.0.0.0
EXPOSE 8080 8081 8082
ENTRYPOINT ["vigil"]
CMD ["--help"]
