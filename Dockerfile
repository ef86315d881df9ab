# syntax=docker/dockerfile:1
# The fngate gateway image: `make image` (IMAGE=registry/fngate:tag).
#   build   compiles cmd/ and lib/ (TypeScript) to dist/ with the dev dependencies
#   deps    installs the production dependencies only (npm ci --omit=dev)
#   malloc  fetches mimalloc (Debian's libmimalloc2.0) for the final stage's LD_PRELOAD
#   final   node + dist/ + protos/ + production node_modules + mimalloc; runs as uid 1000
# The chart runs `node /app/dist/cmd/fngate.js serve --kubernetes --config ...`; the image's
# default command is the same program (`docker run IMAGE local` starts the local demo).
# `make image` builds it with Docker or podman; `make image-test` (test/image/image.test.ts)
# runs it as the chart does.

ARG NODE_IMAGE=node:26-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the `node@26` devDependency only fetches a Node for dev machines (the
# image has its own), and no other package needs an install script to build.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY cmd ./cmd
COPY lib ./lib
RUN node node_modules/typescript7/bin/tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# TypeScript declarations, sources and source maps are never loaded at run time (Node does not
# run .ts from node_modules): a third of the production dependencies' bytes (~32 MB).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && \
    find node_modules -type f \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' \) -delete

# The library file alone, for the image's architecture: download and unpack, no install.
FROM ${NODE_IMAGE} AS malloc
WORKDIR /malloc
RUN apt-get update -qq && apt-get download libmimalloc2.0 && dpkg -x libmimalloc2.0_*.deb pkg && cp -L pkg/usr/lib/*/libmimalloc.so.2 .

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
# mimalloc as malloc: Node allocates and frees in C++ for socket reads and writes, and under
# the earlier node:http2 data plane glibc's malloc cost an eighth of the CPU per RPC
# (docs/performance.md). The start-up log line says which allocator is in use; setting
# LD_PRELOAD to "" in the pod's environment turns it off.
COPY --from=malloc /malloc/libmimalloc.so.2 /usr/local/lib/fngate/libmimalloc.so.2
ENV LD_PRELOAD=/usr/local/lib/fngate/libmimalloc.so.2
WORKDIR /app
# package.json: "type": "module", so Node loads dist/ as ES modules.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY protos ./protos
COPY --from=build /src/dist ./dist
# The node image's unprivileged user, by number so `runAsNonRoot` can verify it.
USER 1000:1000
EXPOSE 10081 10443 9090
ENTRYPOINT ["node", "/app/dist/cmd/fngate.js"]
CMD ["serve", "--kubernetes"]
