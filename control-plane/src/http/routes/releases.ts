/**
 * TUF repository routes: the public, read-only repository devices update from (`/tuf/metadata/*`,
 * `/tuf/targets/*`), and the operator API that publishes signed releases (root, images, targets metadata).
 * Nothing here trusts the uploader: the repository verifies every document against the trusted root (HW-TUF-1).
 */
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Actor, ControlPlaneService, Role } from "../../service/index.js";
import { ImageTooLargeError, registerReleaseReferenceValues, type TufRepository } from "../../tuf/index.js";
import { errorResponses, json, publicRoute, securedRoute } from "../openapi.js";
import { errorBody } from "../errors.js";
import { storedMeasurementSchema } from "../schemas.js";
import { readableChunks } from "../../../../shared/fs/index.js";
import type { HttpEnv } from "../env.js";
import type { RolloutService } from "../../rollouts/index.js";
import { registerRolloutRoutes } from "./rollouts.js";

export const IMAGE_UPLOAD_PREFIX = "/api/v1/tuf/images/";

/** Image uploads stream to disk under their own cap (HASHWARD_TUF_MAX_IMAGE_BYTES), not the 1 MiB JSON body limit. */
export function isStreamedUpload(path: string): boolean {
  return path.startsWith(IMAGE_UPLOAD_PREFIX);
}

export interface ReleaseRoutesDeps {
  tuf: TufRepository;
}

const errors = errorResponses({ 400: "Validation or verification failed (names the field or the reason)", 413: "Too large" });
const metadataDocument = z.record(z.string(), z.unknown()).openapi("TufMetadataDocument");
export const targetViewSchema = z
  .object({
    name: z.string(),
    length: z.number().int(),
    sha256: z.string(),
    hardwareModels: z.array(z.string()),
    version: z.string(),
    referenceMeasurements: z.array(storedMeasurementSchema),
    targetsVersion: z.number().int(),
  })
  .openapi("ReleaseTarget");
const statusSchema = z
  .object({
    rootVersion: z.number().int().nullable(),
    targetsVersion: z.number().int().nullable(),
    snapshotVersion: z.number().int().nullable(),
    timestampVersion: z.number().int().nullable(),
    timestampExpiresAt: z.string().nullable(),
    consistentSnapshot: z.literal(true),
  })
  .openapi("TufStatus");
const keyExport = z.object({ keyid: z.string(), key: z.object({ keytype: z.literal("ed25519"), scheme: z.literal("ed25519"), keyval: z.object({ public: z.string() }) }) });
const onlineKeysSchema = z.object({ snapshot: keyExport, timestamp: keyExport }).openapi("TufOnlineKeys");
const publishedSchema = z
  .object({
    targetsVersion: z.number().int(),
    snapshotVersion: z.number().int(),
    timestampVersion: z.number().int(),
    changed: z.array(targetViewSchema),
    targets: z.array(targetViewSchema),
    referenceValueIds: z.array(z.string()),
  })
  .openapi("PublishedTargets");
const fileParams = z.object({ file: z.string().min(1).max(300).openapi({ param: { name: "file", in: "path" } }) });
const nameParams = z.object({ name: z.string().min(1).max(128).openapi({ param: { name: "name", in: "path" } }) });
const shaParams = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/).openapi({ param: { name: "sha256", in: "path" } }) });

/**
 * A release's reference measurements become approved reference values (source "release") for each listed model
 * at the release's version; appraisal then compares devices running that version against them.
 */

export function registerReleaseRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, deps: ReleaseRoutesDeps): void {
  const { tuf } = deps;
  const publicTufRoute = (summary: string) => publicRoute(summary, "tuf");
  const secured = (role: Role, summary: string, tag = "releases") => securedRoute(service, role, summary, tag);

  // --- the repository (public, read-only) ------------------------------------------------------------------------
  // Plain handlers (documented through the registry): they answer raw bytes and streams, not typed JSON.
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/tuf/metadata/{file}",
    ...publicTufRoute("TUF metadata: root.json, <v>.root.json, <v>.targets.json, <v>.snapshot.json, timestamp.json"),
    request: { params: fileParams },
    responses: { 200: json(metadataDocument, "Signed metadata, byte for byte as published"), 404: errors[404] },
  });
  app.get("/tuf/metadata/:file", async (c) => {
    const file = c.req.param("file");
    const body = await tuf.metadata(file);
    if (body === null) return c.json(errorBody("not_found", `no metadata ${file}`), 404);
    // Timestamp and the unversioned names change; versioned files never do.
    const cache = /^(timestamp|root|targets|snapshot)\.json$/.test(file) ? "no-cache" : "public, max-age=31536000, immutable";
    // The exact published bytes (snapshot/timestamp pin their length and hash), never a re-serialization.
    return c.body(body, 200, { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)), "Cache-Control": cache });
  });

  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/tuf/targets/{file}",
    ...publicTufRoute("A published target image as <sha256>.<name> (consistent snapshot)"),
    request: { params: fileParams },
    responses: {
      200: { description: "The image (streamed)", content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
      404: errors[404],
    },
  });
  app.get("/tuf/targets/:file", async (c) => {
    const file = c.req.param("file");
    const found = await tuf.targetFile(file);
    if (!found) return c.json(errorBody("not_found", `no target ${file}`), 404);
    const stream = Readable.toWeb(createReadStream(found.path)) as unknown as ReadableStream<Uint8Array>;
    return c.body(stream, 200, { "Content-Type": "application/octet-stream", "Content-Length": String(found.length), "Cache-Control": "public, max-age=31536000, immutable" });
  });

  // --- publishing (operator API) ---------------------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/tuf/online-keys",
      ...secured("admin", "The plane's online snapshot and timestamp public keys (for `release root init --online-keys`)"),
      responses: { 200: json(onlineKeysSchema, "Public keys"), ...errors },
    }),
    (c) => c.json(tuf.onlineKeys, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/tuf/status",
      ...secured("viewer", "Published versions of each TUF role"),
      responses: { 200: json(statusSchema, "Status"), ...errors },
    }),
    async (c) => c.json(await tuf.status(), 200),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/tuf/root",
      ...secured("admin", "Publish root metadata (v1 self-signed; vN+1 signed by the old and the new root thresholds)"),
      request: { body: { required: true, content: { "application/json": { schema: metadataDocument } } } },
      responses: { 201: json(z.object({ version: z.number().int() }), "Published"), ...errors },
    }),
    async (c) => c.json(await tuf.uploadRoot(c.req.valid("json")), 201),
  );

  app.openapi(
    createRoute({
      method: "put",
      path: "/api/v1/tuf/images/{sha256}",
      ...secured("operator", "Upload a release image (streamed; must hash to its sha256; HASHWARD_TUF_MAX_IMAGE_BYTES cap)"),
      request: {
        params: shaParams,
        body: { required: true, content: { "application/octet-stream": { schema: z.string().openapi({ format: "binary" }) } } },
      },
      responses: {
        200: json(z.object({ sha256: z.string(), length: z.number().int(), created: z.boolean() }), "Already stored"),
        201: json(z.object({ sha256: z.string(), length: z.number().int(), created: z.boolean() }), "Stored"),
        ...errors,
      },
    }),
    async (c) => {
      const declared = Number(c.req.header("content-length") ?? "NaN");
      try {
        // A declared length over the cap is refused before a byte is read.
        if (Number.isFinite(declared) && declared > tuf.maxImageBytes) throw new ImageTooLargeError(tuf.maxImageBytes);
        const stored = await tuf.storeImage(readableChunks(c.req.raw.body), c.req.valid("param").sha256);
        return c.json(stored, stored.created ? 201 : 200);
      } catch (error) {
        if (error instanceof ImageTooLargeError) return c.json(errorBody("payload_too_large", error.message), 413, { Connection: "close" });
        throw error;
      }
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/api/v1/tuf/targets",
      ...secured("operator", "Publish targets metadata signed by the offline targets keys; the plane signs snapshot and timestamp"),
      request: { body: { required: true, content: { "application/json": { schema: metadataDocument } } } },
      responses: { 201: json(publishedSchema, "Published; reference values registered from the release"), ...errors },
    }),
    async (c) => {
      const published = await tuf.uploadTargets(c.req.valid("json"));
      const referenceValueIds = await registerReleaseReferenceValues(service, c.get("actor"), published.changed);
      return c.json({ ...published, referenceValueIds }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/releases",
      ...secured("viewer", "Targets of the current targets metadata"),
      responses: { 200: json(z.object({ releases: z.array(targetViewSchema) }), "Releases"), ...errors },
    }),
    async (c) => c.json({ releases: await tuf.listTargets() }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/api/v1/releases/{name}",
      ...secured("viewer", "One target of the current targets metadata"),
      request: { params: nameParams },
      responses: { 200: json(targetViewSchema, "Release"), ...errors },
    }),
    async (c) => c.json(await tuf.getTarget(c.req.valid("param").name), 200),
  );
}

export type UpdateRoutesDeps = ReleaseRoutesDeps & { rollouts?: RolloutService };

/** Everything about signed updates: the TUF repository routes and, when the plane runs rollouts, their routes. */
export function registerUpdateRoutes(app: OpenAPIHono<HttpEnv>, service: ControlPlaneService, deps: UpdateRoutesDeps): void {
  registerReleaseRoutes(app, service, deps);
  if (deps.rollouts) registerRolloutRoutes(app, service, deps.rollouts);
}
