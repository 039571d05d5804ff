# iopfd: the daemon and its clients (iopfctl, the VMM handler, the traffic
# generator) in one image. Built with the full toolchain, run with the
# production dependencies only, as the unprivileged `node` user.
#
#   docker build -t iopfd .
#   docker run -e IOPFD_ADMIN_TOKEN=secret -p 8080:8080 iopfd
#
# The Node major is CI's (test/clients/docker.test.ts keeps them equal).

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci
COPY core ./core
COPY protocol ./protocol
COPY server ./server
COPY clients ./clients
RUN npm run build

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist/core ./dist/core
COPY --from=build /app/dist/protocol ./dist/protocol
COPY --from=build /app/dist/server ./dist/server
COPY --from=build /app/dist/clients ./dist/clients
COPY server/ui ./server/ui
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Listening beyond loopback needs the admin token: refuse to start without it.
CMD ["sh", "-c", ": \"${IOPFD_ADMIN_TOKEN:?IOPFD_ADMIN_TOKEN is required}\"; exec node dist/server/main.js --host 0.0.0.0 --port 8080"]
