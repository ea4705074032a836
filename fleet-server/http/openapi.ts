import { z } from "zod";
import { ErrorResponseSchema, type NonJsonBody, type RouteContract } from "../../shared/http/contract.js";
import {
  BuildViewSchema,
  CreateModelRequestSchema,
  ValidationReportSchema,
  VariantViewSchema,
  VersionViewSchema,
} from "../../shared/http/models.js";
import { CreateRolloutRequestSchema } from "../../shared/http/rollout-definition.js";
import { RolloutHistoryEntrySchema } from "../../shared/http/rollout-history.js";
import { GateEvaluationSchema, RolloutMemberViewSchema, RolloutViewSchema } from "../../shared/http/rollouts.js";
import type { OpenApiDocumentSchema } from "../../shared/http/routes.js";
import { QuantizationReportSchema } from "../../shared/schemas/quantization-report.js";
import type { DeclaredRoute, RouteAccess } from "./route-access.js";

/**
 * `GET /v1/openapi.json` (docs/http-api.md): an OpenAPI 3.1 document generated from the HTTP
 * contract (shared/http/*.ts) and the server's own route table (`declaredRoutes`), so it lists
 * exactly the routes the server serves, each with the access level it declares. Pure: the same
 * table and contracts give the same document.
 */

const OPENAPI_VERSION = "3.1.0";

/** Schemas shown under their own names in `components.schemas`, wherever they are used. */
const NAMED: readonly [z.ZodType, string][] = [
  [ErrorResponseSchema, "ErrorResponse"],
  [VersionViewSchema, "ModelVersion"],
  [VariantViewSchema, "ModelVariant"],
  [ValidationReportSchema, "Int8Validation"],
  [QuantizationReportSchema, "QuantizationReport"],
  [BuildViewSchema, "ModelBuild"],
  [RolloutViewSchema, "Rollout"],
  [RolloutMemberViewSchema, "RolloutDevice"],
  [GateEvaluationSchema, "GateEvaluation"],
  [RolloutHistoryEntrySchema, "RolloutEvent"],
];
const NAMED_REQUESTS: readonly [z.ZodType, string][] = [
  [CreateModelRequestSchema, "CreateModelRequest"],
  [CreateRolloutRequestSchema, "CreateRolloutRequest"],
];

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/**
 * One registry per direction: requests are described as a caller writes them (`io: "input"`,
 * defaults optional), responses as the server sends them (`io: "output"`).
 */
function componentSchemas(
  entries: readonly [z.ZodType, string][],
  io: "input" | "output",
): Record<string, Record<string, unknown>> {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of entries) if (!registry.has(schema)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, {
    io,
    target: "draft-2020-12",
    unrepresentable: "any",
    uri: (id) => `#/components/schemas/${id}`,
  });
  // Each schema's own `$schema`/`$id` would re-base its references; the document's dialect is 2020-12 already.
  return Object.fromEntries(
    Object.entries(schemas).map(([id, s]) => {
      const { $schema: _s, $id: _i, ...rest } = s as Record<string, unknown>;
      return [id, rest];
    }),
  );
}

/** Security requirements by access level (OpenAPI 3.1 allows role names for non-OAuth schemes). */
function securityOf(level: RouteAccess): Record<string, string[]>[] {
  switch (level) {
    case "public":
      return [];
    case "device-bundle":
      return [{ bearerToken: ["viewer"] }, { deviceCredentials: [] }];
    default:
      return [{ bearerToken: [level] }];
  }
}

const ACCESS_TEXT: Record<RouteAccess, string> = {
  public: "No credentials.",
  "device-bundle": "A device's MQTT credentials (HTTP Basic; the bundle must be assigned to it) or any API token.",
  viewer: "Any API token (viewer, operator or admin).",
  operator: "An operator or admin token.",
  admin: "An admin token.",
};

function nonJson(body: NonJsonBody) {
  return {
    description: body.description,
    content: {
      [body.mediaType]: {
        schema: body.kind === "binary" ? { type: "string", contentMediaType: body.mediaType } : { type: "string" },
      },
    },
  };
}

export interface OpenApiInput {
  routes: readonly DeclaredRoute[];
  contracts: Readonly<Record<string, RouteContract>>;
  version: string;
}

export type OpenApiDocument = z.output<typeof OpenApiDocumentSchema>;

export function openApiDocument(input: OpenApiInput): OpenApiDocument {
  const contracts = Object.values(input.contracts);
  // Every top-level schema gets a component: named ones by NAMED, the rest by operation and status.
  const responses: [z.ZodType, string][] = [...NAMED];
  const requests: [z.ZodType, string][] = [...NAMED_REQUESTS];
  for (const c of contracts) {
    const op = capitalize(c.operationId);
    for (const [status, body] of Object.entries(c.responses)) {
      if (body instanceof z.ZodType) responses.push([body, `${op}Response${status}`]);
    }
    if (c.body) requests.push([c.body, `${op}Request`]);
  }
  const responseSchemas = componentSchemas(responses, "output");
  const requestSchemas = componentSchemas(requests, "input");
  const nameOf = (entries: [z.ZodType, string][], schema: z.ZodType) => entries.find(([s]) => s === schema)![1];

  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of input.routes) {
    if (route.operation === null) {
      throw new Error(`route ${route.method} ${route.url} implements no contract (shared/http/routes.ts)`);
    }
    const c = input.contracts[route.operation];
    if (!c) throw new Error(`route ${route.method} ${route.url}: unknown contract ${route.operation}`);
    const methods = Array.isArray(c.method) ? c.method : [c.method];
    const first = methods[0] === route.method;
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    const parameters = [
      ...Object.entries(c.params?.shape ?? {}).map(([name, s]) => ({
        name,
        in: "path",
        required: true,
        schema: z.toJSONSchema(s as z.ZodType, { io: "input", unrepresentable: "any" }),
      })),
      ...Object.entries(c.query?.shape ?? {}).map(([name, s]) => ({
        name,
        in: "query",
        required: !(s as z.ZodType).safeParse(undefined).success,
        schema: z.toJSONSchema(s as z.ZodType, { io: "input", unrepresentable: "any" }),
      })),
    ].map(({ schema, ...p }) => {
      const { $schema: _s, ...rest } = schema as Record<string, unknown>;
      return { ...p, schema: rest };
    });
    const operation: Record<string, unknown> = {
      operationId: first ? c.operationId : `${c.operationId}${capitalize(route.method.toLowerCase())}`,
      summary: c.summary,
      description: `Access: \`${route.access}\`. ${ACCESS_TEXT[route.access]}`,
      tags: [c.tag],
      "x-edgefleet-access": route.access,
      security: securityOf(route.access),
      ...(parameters.length > 0 ? { parameters } : {}),
      responses: {
        ...Object.fromEntries(
          Object.entries(c.responses).map(([status, body]) => {
            if (route.method === "HEAD" || body === null) return [status, { description: "headers only" }];
            if (body instanceof z.ZodType) {
              return [
                status,
                {
                  description: status.startsWith("2") ? "success" : "see the body",
                  content: { "application/json": { schema: ref(nameOf(responses, body)) } },
                },
              ];
            }
            return [status, nonJson(body)];
          }),
        ),
        default: {
          description: "an error: 4xx for the caller's mistakes, 5xx for the server's (docs/errors.md)",
          content: { "application/json": { schema: ref("ErrorResponse") } },
        },
      },
    };
    const extraTypes = c.bodyMediaTypes ?? [];
    if (c.body || extraTypes.length > 0) {
      const content: Record<string, unknown> = {};
      if (c.body) content["application/json"] = { schema: ref(nameOf(requests, c.body)) };
      for (const media of extraTypes) {
        content[media] =
          media === "application/octet-stream"
            ? { schema: { type: "string", contentMediaType: media } }
            : { schema: c.body ? ref(nameOf(requests, c.body)) : {} };
      }
      operation.requestBody = { required: !c.bodyOptional, content };
    }
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operation };
  }

  return {
    openapi: OPENAPI_VERSION,
    info: {
      title: "EdgeFleet fleet server API",
      version: input.version,
      description:
        "The operator API of an EdgeFleet fleet server, generated from the schemas the server validates with (docs/http-api.md).",
    },
    jsonSchemaDialect: "https://json-schema.org/draft/2020-12/schema",
    servers: [{ url: "/" }],
    tags: [...new Set(contracts.map((c) => c.tag))].sort().map((name) => ({ name })),
    paths,
    components: {
      schemas: { ...requestSchemas, ...responseSchemas },
      securitySchemes: {
        bearerToken: {
          type: "http",
          scheme: "bearer",
          description:
            "An API token (fleetctl tokens create) or the bootstrap admin token; its role is viewer, operator or admin.",
        },
        deviceCredentials: {
          type: "http",
          scheme: "basic",
          description: "A device's id and MQTT password (bundle downloads only).",
        },
      },
    },
  };
}
