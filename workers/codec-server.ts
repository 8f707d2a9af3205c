/**
 * `dbops codec-server`: the Temporal codec server protocol over plain HTTP, so the Web UI and
 * `temporal workflow show --codec-endpoint` can display encrypted payloads. `POST …/encode` and
 * `POST …/decode` take and return `{ "payloads": [...] }` in protobuf JSON (metadata values and
 * data in base64); only the last path segment counts, so `/default/decode` works as well.
 *
 * Who may call it: requests with an `Origin` header only from the configured Web UI origins (CORS
 * with credentials), and every encode/decode request with `Authorization: Bearer <token>`. A
 * refusal carries a short reason and never any payload data.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Payload, PayloadCodec } from '@temporalio/common';

import { AesGcmPayloadCodec } from './codec/aes-gcm-codec';
import { ConfigError, type Config } from './config';

/** Larger than Temporal's 2 MB payload limit, with room for a page of history events. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface CodecServerOptions {
  codec: PayloadCodec;
  token: string;
  allowedOrigins: string[];
  /** The namespace whose payloads it serves; a request naming another in X-Namespace is refused. */
  namespace: string;
}

/** Payloads as the protocol carries them (proto3 JSON: bytes in base64). */
export interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function createCodecServer(options: CodecServerOptions): http.Server {
  const expectedToken = sha256(options.token);
  return http.createServer((request, response) => {
    handle(request, response, options, expectedToken).catch((error: unknown) => {
      const refusal =
        error instanceof HttpError ? error : new HttpError(500, 'internal error (see the codec server log)');
      if (!(error instanceof HttpError)) console.error(`codec server: ${(error as Error).message}`);
      response.writeHead(refusal.status, { 'content-type': 'application/json', ...refusal.headers });
      response.end(JSON.stringify({ error: refusal.message }));
    });
  });
}

async function handle(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  options: CodecServerOptions,
  expectedToken: Buffer,
): Promise<void> {
  const origin = request.headers.origin;
  if (origin !== undefined) {
    if (!options.allowedOrigins.includes(origin)) throw new HttpError(403, `origin ${origin} is not allowed`);
    response.setHeader('access-control-allow-origin', origin);
    response.setHeader('access-control-allow-credentials', 'true');
    response.setHeader('vary', 'Origin');
  }
  if (request.method === 'OPTIONS') {
    // A browser's preflight carries no credentials: it only asks what the real request may send.
    response.writeHead(204, {
      'access-control-allow-methods': 'POST, OPTIONS',
      'access-control-allow-headers': 'Authorization, Content-Type, X-Namespace',
      'access-control-max-age': '600',
    });
    response.end();
    return;
  }
  const endpoint = new URL(request.url ?? '/', 'http://codec-server').pathname.split('/').pop();
  if (endpoint !== 'encode' && endpoint !== 'decode') {
    throw new HttpError(404, 'not found: POST /encode or /decode');
  }
  if (request.method !== 'POST')
    throw new HttpError(405, `${endpoint} takes POST`, { allow: 'POST, OPTIONS' });
  authorize(request.headers.authorization, expectedToken);
  // The CLI sends the header empty when it does not know the namespace.
  const namespace = request.headers['x-namespace'];
  if (namespace !== undefined && namespace !== '' && namespace !== options.namespace) {
    throw new HttpError(403, `this codec server serves namespace ${options.namespace} only`);
  }

  const payloads = parseBody(await readBody(request));
  let result: Payload[];
  try {
    result =
      endpoint === 'encode' ? await options.codec.encode(payloads) : await options.codec.decode(payloads);
  } catch (error) {
    // The codec's messages name key ids and never contain payload data.
    throw new HttpError(422, `cannot ${endpoint}: ${(error as Error).message}`);
  }
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ payloads: result.map(toJson) }));
}

function authorize(header: string | undefined, expectedToken: Buffer): void {
  const match = /^Bearer (\S+)$/i.exec(header ?? '');
  if (match === null) {
    throw new HttpError(401, 'an Authorization: Bearer <token> header is required', {
      'www-authenticate': 'Bearer',
    });
  }
  // Equal-length digests compared in constant time: the response time says nothing about the token.
  if (!timingSafeEqual(sha256(match[1]!), expectedToken))
    throw new HttpError(403, 'the bearer token is not valid');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

async function readBody(request: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `the body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseBody(body: string): Payload[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new HttpError(400, 'the body is not JSON; expected { "payloads": [...] }');
  }
  const payloads = (parsed as { payloads?: unknown } | null)?.payloads;
  if (!Array.isArray(payloads)) throw new HttpError(400, 'the body has no "payloads" array');
  return payloads.map((payload, index) => fromJson(payload, index));
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function fromJson(value: unknown, index: number): Payload {
  const bytes = (text: unknown, field: string): Uint8Array => {
    if (typeof text !== 'string' || !BASE64.test(text)) {
      throw new HttpError(400, `payloads[${index}].${field} is not a base64 string`);
    }
    return Buffer.from(text, 'base64');
  };
  if (typeof value !== 'object' || value === null)
    throw new HttpError(400, `payloads[${index}] is not an object`);
  const { metadata = {}, data = '' } = value as { metadata?: unknown; data?: unknown };
  if (typeof metadata !== 'object' || metadata === null) {
    throw new HttpError(400, `payloads[${index}].metadata is not an object`);
  }
  return {
    metadata: Object.fromEntries(
      Object.entries(metadata).map(([key, text]) => [key, bytes(text, `metadata.${key}`)]),
    ),
    data: bytes(data, 'data'),
  };
}

export function toJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(
      Object.entries(payload.metadata ?? {}).map(([key, value]) => [
        key,
        Buffer.from(value ?? new Uint8Array()).toString('base64'),
      ]),
    ),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

/** The codec server of the configuration: the worker's keys, the configured token and origins. */
export function codecServerFromConfig(config: Config): http.Server {
  const keys = config.temporal.codecKeys;
  if (keys === undefined) {
    throw new ConfigError(
      'DBOPS_CODEC_KEYS_FILE',
      'is not set (nor DBOPS_CODEC_KEY and DBOPS_CODEC_KEY_ID); the codec server needs the keys the worker encrypts with',
    );
  }
  const token = config.codecServer.token;
  if (token === undefined) {
    throw new ConfigError(
      'DBOPS_CODEC_SERVER_TOKEN',
      'is not set; every encode/decode request must carry it as a bearer token (make one with: openssl rand -hex 32)',
    );
  }
  return createCodecServer({
    codec: new AesGcmPayloadCodec(keys),
    token,
    allowedOrigins: config.codecServer.allowedOrigins,
    namespace: config.temporal.namespace,
  });
}

/** Serves until SIGINT / SIGTERM. */
export async function runCodecServer(config: Config): Promise<void> {
  const server = codecServerFromConfig(config);
  const { host, port, allowedOrigins } = config.codecServer;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  console.log(
    `codec server on http://${address.address}:${address.port} for namespace ${config.temporal.namespace} (browser origins: ${allowedOrigins.join(', ')})`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
