/**
 * A loopback HTTP proxy in front of moto for the AWS Query APIs (RDS): it records every request,
 * and on demand answers the next N calls of an action with an AWS error, or rewrites moto's answer
 * (to show states moto never reports). The SDK under test talks to it over real HTTP, so its own
 * retry strategy runs exactly as in production.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  /** The Query API action, e.g. `CreateDBSnapshot` (empty for other protocols). */
  action: string;
  params: URLSearchParams;
}

export interface Fault {
  status: number;
  code: string;
  message: string;
}

export interface FaultProxy {
  endpoint: string;
  /** Every request seen since the last `clear()`, in order. */
  requests: RecordedRequest[];
  /** The requests of one action. */
  calls(action: string): RecordedRequest[];
  /** Answers the next `times` calls of `action` with `fault` instead of forwarding them. */
  failNext(action: string, times: number, fault: Fault): void;
  /** Forwards the next `times` calls of `action` and rewrites moto's response body. */
  rewriteNext(action: string, times: number, rewrite: (body: string) => string): void;
  /** Forgets recorded requests and pending faults / rewrites. */
  clear(): void;
  stop(): Promise<void>;
}

interface Plan {
  action: string;
  remaining: number;
  fault?: Fault;
  rewrite?: (body: string) => string;
}

export const THROTTLING: Fault = { status: 400, code: 'Throttling', message: 'Rate exceeded' };

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  let requests: RecordedRequest[] = [];
  let plans: Plan[] = [];

  const takePlan = (action: string): Plan | undefined => {
    const plan = plans.find((p) => p.action === action && p.remaining > 0);
    if (plan) plan.remaining -= 1;
    return plan;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const isQuery = (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
      const params = new URLSearchParams(isQuery ? body.toString() : '');
      const action = params.get('Action') ?? '';
      requests.push({ action, params });
      const plan = takePlan(action);
      if (plan?.fault) {
        res.writeHead(plan.fault.status, { 'content-type': 'text/xml' });
        res.end(errorXml(plan.fault));
        return;
      }
      forward(upstream, req, body, plan?.rewrite)
        .then(({ status, headers, body: answer }) => {
          res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(answer)) });
          res.end(answer);
        })
        .catch((error: Error) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`fault proxy: ${error.message}`);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    calls: (action) => requests.filter((r) => r.action === action),
    failNext: (action, times, fault) => plans.push({ action, remaining: times, fault }),
    rewriteNext: (action, times, rewrite) => plans.push({ action, remaining: times, rewrite }),
    clear() {
      requests = [];
      plans = [];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function forward(
  upstream: URL,
  req: http.IncomingMessage,
  body: Buffer,
  rewrite: ((body: string) => string) | undefined,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string | Buffer }> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const raw = Buffer.concat(chunks);
          const headers = { ...answer.headers };
          delete headers['content-length'];
          delete headers['transfer-encoding'];
          resolve({
            status: answer.statusCode ?? 502,
            headers,
            body: rewrite ? rewrite(raw.toString()) : raw,
          });
        });
        answer.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

/** The AWS Query protocol's error document, as RDS sends it. */
function errorXml(fault: Fault): string {
  return (
    `<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">` +
    `<Error><Type>${fault.status >= 500 ? 'Receiver' : 'Sender'}</Type>` +
    `<Code>${fault.code}</Code><Message>${fault.message}</Message></Error>` +
    `<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>`
  );
}
