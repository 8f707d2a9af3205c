/**
 * A loopback HTTP proxy in front of moto for the AWS Query APIs (RDS): it records every request,
 * and on demand answers the next N calls of an action with an AWS error, or rewrites moto's answer
 * (to show states moto never reports). The SDK under test talks to it over real HTTP, so its own
 * retry strategy runs exactly as in production.
 *
 * The state-delay layer makes moto's resources, which are ready at once, pass through the states
 * RDS shows for a while: a new or restored instance is `creating` (no endpoint yet), then
 * `backing-up`; a modified one `modifying`; a snapshot `creating` while its instance is
 * `backing-up`; an export `STARTING`, then `IN_PROGRESS`. Each phase lasts a fixed time from the
 * request that started it, so the workflows' waits poll through them as they would on RDS.
 *
 * moto's automated backups carry neither the instance's DbiResourceId nor a restore window, so
 * nothing is restorable to a point in time; `completeAutomatedBackups` adds both as RDS reports
 * them (from the instance's creation to now).
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
  /** Turns the state-delay layer on: each transitional state is shown for `phaseMs`, from the next request on. */
  delayStates(phaseMs: number): void;
  /** Every status the answers gave for a resource (`instance`, `snapshot`, `export`), in order, without repeats. */
  statesShown(kind: ResourceKind, id: string): string[];
  /** Adds the DbiResourceId and restore window RDS reports to moto's automated backups. */
  completeAutomatedBackups(): void;
  /** Rewrites every instance endpoint in moto's answers to this address (moto's hosts do not exist). */
  pointEndpointsAt(endpoint: { host: string; port: number }): void;
  /** Forgets recorded requests, pending faults / rewrites and the states shown. */
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

export type ResourceKind = 'instance' | 'snapshot' | 'export';

/** A resource shown in transitional states: `phases[i]` from `startedAt + i * phaseMs` on. */
interface Delay {
  kind: ResourceKind;
  id: string;
  phases: string[];
  startedAt: number;
  phaseMs: number;
}

/** What a successful request starts: the resources it puts in which transitional states. */
function delaysOf(
  action: string,
  params: URLSearchParams,
): { kind: ResourceKind; id: string | null; phases: string[] }[] {
  const restored = ['creating', 'backing-up'];
  switch (action) {
    case 'CreateDBInstance':
    case 'RestoreDBInstanceFromDBSnapshot':
      return [{ kind: 'instance', id: params.get('DBInstanceIdentifier'), phases: restored }];
    case 'RestoreDBInstanceToPointInTime':
      return [{ kind: 'instance', id: params.get('TargetDBInstanceIdentifier'), phases: restored }];
    case 'ModifyDBInstance':
      return [{ kind: 'instance', id: params.get('DBInstanceIdentifier'), phases: ['modifying'] }];
    case 'CreateDBSnapshot':
      return [
        { kind: 'snapshot', id: params.get('DBSnapshotIdentifier'), phases: ['creating'] },
        { kind: 'instance', id: params.get('DBInstanceIdentifier'), phases: ['backing-up'] },
      ];
    case 'StartExportTask':
      return [
        { kind: 'export', id: params.get('ExportTaskIdentifier'), phases: ['STARTING', 'IN_PROGRESS'] },
      ];
    default:
      return [];
  }
}

/** How each kind appears in moto's XML: its element, the id inside, and the status element. */
const SHAPES: Record<ResourceKind, { element: RegExp; id: RegExp; status: RegExp }> = {
  instance: {
    element: /<DBInstance>[\s\S]*?<\/DBInstance>/g,
    id: /<DBInstanceIdentifier>([^<]+)<\/DBInstanceIdentifier>/,
    status: /<DBInstanceStatus>[^<]*<\/DBInstanceStatus>/,
  },
  snapshot: {
    element: /<DBSnapshot>[\s\S]*?<\/DBSnapshot>/g,
    id: /<DBSnapshotIdentifier>([^<]+)<\/DBSnapshotIdentifier>/,
    status: /<Status>[^<]*<\/Status>/,
  },
  export: {
    // StartExportTask answers with the task's fields directly in its result element.
    element: /<ExportTask>[\s\S]*?<\/ExportTask>|<StartExportTaskResult>[\s\S]*?<\/StartExportTaskResult>/g,
    id: /<ExportTaskIdentifier>([^<]+)<\/ExportTaskIdentifier>/,
    status: /<Status>[^<]*<\/Status>/,
  },
};

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  let requests: RecordedRequest[] = [];
  let plans: Plan[] = [];
  let phaseMs: number | undefined;
  let delays: Delay[] = [];
  let shown = new Map<string, string[]>();
  let endpoint: { host: string; port: number } | undefined;
  let completeBackups = false;
  /** What moto said of each instance it described: its DbiResourceId and creation time. */
  const instances = new Map<string, { resourceId: string; createdAt: string }>();

  /** An automated backup as RDS describes it: whose it is and from when to when it restores. */
  const completeBackup = (element: string): string => {
    const id = /<DBInstanceIdentifier>([^<]+)</.exec(element)?.[1];
    const instance = id === undefined ? undefined : instances.get(id.toLowerCase());
    if (instance === undefined || element.includes('<RestoreWindow>')) return element;
    return element.replace(
      '</DBInstanceAutomatedBackup>',
      `<DbiResourceId>${instance.resourceId}</DbiResourceId><RestoreWindow><EarliestTime>${instance.createdAt}</EarliestTime>` +
        `<LatestTime>${new Date().toISOString()}</LatestTime></RestoreWindow></DBInstanceAutomatedBackup>`,
    );
  };

  /** The transitional status of a resource now, or undefined once its delays are over. */
  const delayedStatus = (kind: ResourceKind, id: string): string | undefined => {
    const now = Date.now();
    for (const delay of [...delays].reverse()) {
      if (delay.kind !== kind || delay.id !== id.toLowerCase()) continue;
      const phase = delay.phases[Math.floor((now - delay.startedAt) / delay.phaseMs)];
      if (phase !== undefined) return phase;
    }
    return undefined;
  };

  const show = (kind: ResourceKind, id: string, status: string) => {
    const key = `${kind}:${id.toLowerCase()}`;
    const seen = shown.get(key) ?? [];
    if (seen.at(-1) !== status) seen.push(status);
    shown.set(key, seen);
  };

  /** moto's answer as RDS would give it now: transitional states, and endpoints that exist. */
  const transform = (body: string): string => {
    let out = body;
    for (const [kind, shape] of Object.entries(SHAPES) as [ResourceKind, (typeof SHAPES)[ResourceKind]][]) {
      out = out.replace(shape.element, (element) => {
        const id = shape.id.exec(element)?.[1];
        if (id === undefined) return element;
        const resourceId = /<DbiResourceId>([^<]+)</.exec(element)?.[1];
        const createdAt = /<InstanceCreateTime>([^<]+)</.exec(element)?.[1];
        if (kind === 'instance' && resourceId !== undefined && createdAt !== undefined) {
          instances.set(id.toLowerCase(), { resourceId, createdAt });
        }
        const status = delayedStatus(kind, id);
        let rewritten = element;
        if (status !== undefined) {
          rewritten = rewritten.replace(shape.status, (tag) => tag.replace(/>[^<]*</, `>${status}<`));
          if (kind === 'instance' && status === 'creating') {
            rewritten = rewritten.replace(/<Endpoint>[\s\S]*?<\/Endpoint>/, '');
          }
          if (kind === 'snapshot') {
            rewritten = rewritten.replace(
              /<PercentProgress>\d+<\/PercentProgress>/,
              '<PercentProgress>40</PercentProgress>',
            );
          }
        }
        if (kind === 'instance' && endpoint !== undefined) {
          rewritten = rewritten.replace(
            /<Endpoint>[\s\S]*?<\/Endpoint>/,
            `<Endpoint><Address>${endpoint.host}</Address><Port>${endpoint.port}</Port></Endpoint>`,
          );
        }
        const statusNow = shape.status.exec(rewritten)?.[0].replace(/<[^>]*>/g, '');
        if (statusNow !== undefined) show(kind, id, statusNow);
        return rewritten;
      });
    }
    if (completeBackups) {
      out = out.replace(/<DBInstanceAutomatedBackup>[\s\S]*?<\/DBInstanceAutomatedBackup>/g, completeBackup);
    }
    return out;
  };

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
      const startsDelays = phaseMs === undefined ? [] : delaysOf(action, params);
      forward(upstream, req, body, plan?.rewrite)
        .then(({ status, headers, body: raw }) => {
          if (status < 300 && phaseMs !== undefined) {
            for (const { kind, id, phases } of startsDelays) {
              if (id !== null)
                delays.push({ kind, id: id.toLowerCase(), phases, startedAt: Date.now(), phaseMs });
            }
          }
          const answer = isQuery && status < 300 ? transform(raw.toString()) : raw;
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
    delayStates(ms) {
      phaseMs = ms;
    },
    statesShown: (kind, id) => [...(shown.get(`${kind}:${id.toLowerCase()}`) ?? [])],
    completeAutomatedBackups() {
      completeBackups = true;
    },
    pointEndpointsAt(address) {
      endpoint = address;
    },
    clear() {
      requests = [];
      plans = [];
      delays = [];
      shown = new Map();
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
