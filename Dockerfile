# syntax=docker/dockerfile:1
# The dbops worker. Two stages:
#   check    installs every dependency and typechecks the sources (a type error fails the build);
#   runtime  installs the production dependencies only and runs the checked sources as `node`.
#
# The worker runs its TypeScript through tsx, as `npm run worker` does, rather than JavaScript
# compiled by tsc: the local provider bundles its background jobs' script from the sources with
# esbuild when it first starts one, and the Temporal worker bundles the workflow sources itself, so
# the image runs exactly the files that the tests ran. tsx and esbuild are therefore runtime
# dependencies (as is squawk-cli, which lints migrations).

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS check
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY migrations ./migrations
RUN npx tsc --noEmit -p tsconfig.json

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DBOPS_STATE_DIR=/var/lib/dbops/state
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force
# Sources from the stage that typechecked them; owned by root, so the worker cannot change its code.
COPY --from=check /app/workflows ./workflows
COPY --from=check /app/activities ./activities
COPY --from=check /app/workers ./workers
COPY --from=check /app/migrations ./migrations
# The only place the worker writes (local provider state); a volume in docker-compose.yml.
RUN mkdir -p /var/lib/dbops/state && chown -R node:node /var/lib/dbops

# The unprivileged user of the Node image (uid 1000).
USER node

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "--require", "tsx/cjs", "workers/healthcheck.ts"]

CMD ["node", "--require", "tsx/cjs", "workers/worker-main.ts"]
