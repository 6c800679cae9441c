# netpol-guard container image.
#   docker build -t netpol-guard:0.1.0 .
# Both stages use the same base so the venv's interpreter symlinks resolve in the
# final stage; pin it by digest (python:3.11-slim@sha256:...) in your release build.

# --- builder: install the package and its dependencies into a self-contained venv ---
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships binary wheels for this platform: no compiler or apt needed.
RUN python -m venv /opt/netpol-guard

WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook/ ./webhook/
# pip compiles the .pyc files here, so the read-only root filesystem at run time is fine.
RUN /opt/netpol-guard/bin/pip install --no-cache-dir .

# --- final: the interpreter from the base image plus the venv, nothing else ---
FROM python:3.11-slim

LABEL org.opencontainers.image.title="netpol-guard" \
      org.opencontainers.image.description="Kubernetes validating admission webhook for deny-all NetworkPolicy coverage" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/netpol-guard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=builder /opt/netpol-guard /opt/netpol-guard

# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532

EXPOSE 8443
ENTRYPOINT ["netpol-guard"]
CMD ["serve"]
