# syntax=docker/dockerfile:1
# pg-ambassador container image.
#   docker build -t pg-ambassador .
#   docker run --stop-timeout 40 -p 127.0.0.1:6432:5432 -e UPSTREAM_HOST=db.internal \
#     -e UPSTREAM_PASSWORD_FILE=/run/secrets/pw -v "$PWD/secrets:/run/secrets:ro" pg-ambassador
# Configure it with a mounted file (PG_AMBASSADOR_CONFIG=/etc/pg-ambassador/ambassador.yaml) or with
# environment variables alone (README: "Running it as a sidecar"); the file wins where both set a
# key. The image listens on all interfaces (a container's loopback is its own): without client
# authentication (a file's clientAuth) publish the port on loopback only, and in a pod set
# LISTEN_HOST=127.0.0.1. A config file that sets listen.host or admin.host overrides the image's.

# Node 24: Node 20, which CI runs, reached its end of life in April 2026, Node 22 reaches it in
# April 2027, Node 24 in April 2028. The whole suite passes on all three. Node 26 does not keep issue
# 2's bound (a slow client reading 500 MB took the ambassador to 100-101 MB). README: Development,
# "Node versions".
ARG NODE_VERSION=24.21.0

# ---- build: dev dependencies, TypeScript compiled to dist/, then pruned to production ones --------
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Optional dependencies are embedded-postgres (the demo's fallback server) and platform binaries
# of dev tools: not for the image. No production dependency has an install script; tsc needs none.
RUN npm ci --omit=optional --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --omit=optional --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime: production dependencies and the compiled code, run as a non-root user --------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# tini as PID 1: forwards SIGTERM/SIGINT/SIGHUP to Node and reaps orphans (exec credential commands).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    LISTEN_HOST=0.0.0.0 \
    ADMIN_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY config/ambassador.example.yaml ./config/
# The image's `node` user, by number so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
# 5432: PostgreSQL clients; 9187: admin HTTP (/metrics, /livez, /readyz, /startupz, /config).
EXPOSE 5432 9187
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/app/bin/pg-ambassador.js", "probe", "livez"]
STOPSIGNAL SIGTERM
# V8's young generation held to 16 MB per semi-space, Node 20's and 22's default: Node 24 lets it
# grow to 64 MB under a storm of logins and keeps it, 20 KiB per idle client instead of 13. Only
# the command line sets it; tests and the bench start the ambassador with the same options.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--max-semi-space-size=16", "/app/bin/pg-ambassador.js"]
CMD []
